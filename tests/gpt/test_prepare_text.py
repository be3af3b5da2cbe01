from helpers import SHAKESPEARE

from gpt.prepare_text import main
from gpt.shards import TokenDataset


def test_shakespeare_char_matches_the_classic_split(tmp_path, capsys):
    assert main([str(SHAKESPEARE), "--tokenizer", "char", "--out", str(tmp_path / "ds")]) == 0
    ds = TokenDataset.open(tmp_path / "ds", verify=True)
    assert ds.vocab_size == 65 and ds.manifest["tokenizer"] == "char"
    assert (ds.num_tokens("train"), ds.num_tokens("val")) == (1_003_854, 111_540)
    text = SHAKESPEARE.read_text(encoding="utf-8")
    tok = ds.tokenizer()
    assert tok.decode(ds.tokens("train", 0)) + tok.decode(ds.tokens("val", 0)) == text
    assert "train 1,003,854 tokens" in capsys.readouterr().out


def test_gpt2_tokens_and_rerun_replaces_the_folder(tmp_path):
    for _ in range(2):
        main([str(SHAKESPEARE), "--tokenizer", "gpt2", "--out", str(tmp_path / "ds")])
    ds = TokenDataset.open(tmp_path / "ds")
    total = ds.num_tokens("train") + ds.num_tokens("val")
    assert abs(total - 338_025) < 10  # the whole file is 338,025 tokens; the split point may cut one word
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]
