"""`gptflow export`: a character model and a gpt2-vocabulary model of the gpt2 family and a character model of the
qwen3 family, trained on real Chinese sentences, exported and loaded with transformers; greedy generation there
equals `gptflow sample --temperature 0` here."""

import json

import pytest
from helpers import SHARED_DATA, tiny_settings, train

from cli.main import main as gptflow
from gpt.config import TrainConfig, from_dict
from gpt.prepare_text import prepare_text
from gpt.tokenizer import load_tokenizer

transformers = pytest.importorskip("transformers")

PROMPT = "我们的经济"
NEW_TOKENS = 20


@pytest.fixture(scope="module")
def chinese_text(tmp_path_factory):
    """8,000 Chinese sentences of translation2019zh, a line each."""
    lines = (SHARED_DATA / "samples" / "translation2019zh" / "translation2019zh_valid.json").read_text("utf-8")
    text = "\n".join(json.loads(line)["chinese"] for line in lines.splitlines()[:8000])
    path = tmp_path_factory.mktemp("text") / "zh.txt"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("tokenizer", "steps", "recipe"),
    [("char", 200, {}), ("gpt2", 40, {}), ("char", 200, {"model": {"arch": "qwen3"}, "optimizer": "muon"})],
    ids=["char", "gpt2", "char-qwen3"],
)
def test_exported_model_generates_greedily_as_gptflow_sample(chinese_text, tmp_path, capsys, tokenizer, steps, recipe):
    data = tmp_path / "data"
    prepare_text(chinese_text, data, tokenizer)
    schedule = {"max_iters": steps, "eval_interval": steps, "ckpt_interval": steps}
    settings = tiny_settings(data, tmp_path / "run", **schedule, **recipe)
    train(from_dict(TrainConfig, settings))
    capsys.readouterr()

    assert gptflow(["export", str(tmp_path / "run"), "--out", str(tmp_path / "hf")]) == 0
    assert "exported" in capsys.readouterr().out
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    assert type(hf_model).__name__ == ("Qwen3ForCausalLM" if recipe else "GPT2LMHeadModel")
    ids = hf_tokenizer(PROMPT, return_tensors="pt").input_ids
    out = hf_model.generate(ids, do_sample=False, max_new_tokens=NEW_TOKENS, pad_token_id=0)
    theirs = hf_tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=False)

    sample = ["sample", "--ckpt", str(tmp_path / "run"), "--start", PROMPT, "--temperature", "0", "--device", "cpu",
              "--max-new-tokens", str(NEW_TOKENS)]  # fmt: skip
    assert gptflow(sample) == 0
    ours = capsys.readouterr().out
    assert ours == PROMPT + theirs
    assert len(out[0]) - ids.shape[1] == NEW_TOKENS
    vocab = load_tokenizer(data / "tokenizer.json").n_vocab
    assert hf_model.config.vocab_size == vocab == len(hf_tokenizer)  # padding rows dropped


def test_export_names_what_is_missing(tmp_path, capsys):
    assert gptflow(["export", str(tmp_path / "nothing"), "--out", str(tmp_path / "hf")]) == 1
    assert "holds no finished checkpoint" in capsys.readouterr().err
