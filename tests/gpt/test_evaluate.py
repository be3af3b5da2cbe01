"""Models of different tokenizers compared on one text: the scores training logs, tables and the text files read."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import tiny_settings, train

from gpt import evaluate
from gpt.bpc import EvalText
from gpt.config import TrainConfig, from_dict
from gpt.prepare_text import prepare_text
from gpt.shards import TokenDataset


@pytest.mark.parametrize("recipe", [{}, {"model": {"arch": "qwen3"}, "optimizer": "muon"}], ids=["gpt2", "qwen3"])
def test_a_checkpoint_scores_what_training_logged(tiny, tmp_path, char_dataset, recipe):
    cfg, _ = tiny(max_iters=10, eval_interval=10, eval_chars=3000, **recipe)
    train(cfg)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    logged = next(r for r in rows if r["step"] == 10 and "val_bpc" in r)
    text = EvalText.of_dataset(TokenDataset.open(char_dataset), 3000)
    row = evaluate.evaluate_checkpoint(tmp_path / "run" / "step-10", text, batch_size=5, device="cpu")
    assert row["step"] == 10 and row["tokenizer"] == "char 62" and row["tokens_per_char"] == 1.0
    assert row["val_bpc"] == pytest.approx(logged["val_bpc"], rel=1e-5)
    assert row["val_bpc/val"] == row["val_bpc"] == row["val_bits_per_byte"]  # ASCII: a byte per character


def test_two_tokenizers_are_compared_on_one_text_file(tmp_path, char_dataset, shakespeare_text, capsys):
    source = tmp_path / "input.txt"
    source.write_text(shakespeare_text[:200_000], encoding="utf-8")
    prepare_text(source, tmp_path / "gpt2", "gpt2")
    train(from_dict(TrainConfig, tiny_settings(char_dataset, tmp_path / "char-run", max_iters=10)))
    train(from_dict(TrainConfig, tiny_settings(tmp_path / "gpt2", tmp_path / "gpt2-run", max_iters=10)))
    held_out = tmp_path / "sonnets.txt"
    held_out.write_text("Shall I compare thee to a summer's day?\n\nThou art more lovely and more temperate.\n")
    ckpts = ["--ckpt", str(tmp_path / "char-run"), "--ckpt", str(tmp_path / "gpt2-run")]
    capsys.readouterr()  # the trainings' logs
    assert evaluate.main([*ckpts, "--text", str(held_out), "--device", "cpu", "--json"]) == 0
    char, gpt2 = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert char["tokenizer"] == "char 62" and gpt2["tokenizer"] == "gpt2 50,257"
    assert char["tokens_per_char"] == 1.0 and 0.1 < gpt2["tokens_per_char"] < 0.4
    assert all(0 < row["val_bpc"] == row["val_bpc/sonnets"] < 20 for row in (char, gpt2))

    assert evaluate.main([*ckpts, "--text", str(held_out), "--device", "cpu"]) == 0
    header, *lines = capsys.readouterr().out.splitlines()
    assert header.split()[:6] == ["model", "step", "tokenizer", "tokens/char", "bpc", "bits/byte"]
    best_first = sorted([(char["model"], char["val_bpc"]), (gpt2["model"], gpt2["val_bpc"])], key=lambda item: item[1])
    assert [line.split()[0] for line in lines] == [name for name, _ in best_first]


def test_text_files_of_three_formats_are_read_as_documents(tmp_path):
    (tmp_path / "a.txt").write_text("床前明月光\n疑是地上霜\n\n\n举头望明月\r\n\r\n", encoding="utf-8")
    (tmp_path / "b.jsonl").write_text('{"text": "低头思故乡"}\n\n{"text": "春眠不觉晓"}\n', encoding="utf-8")
    pq.write_table(pa.table({"text": ["处处闻啼鸟", ""]}), tmp_path / "c.parquet")
    assert evaluate.read_documents(tmp_path / "a.txt") == ["床前明月光\n疑是地上霜", "举头望明月"]
    assert evaluate.read_documents(tmp_path / "b.jsonl") == ["低头思故乡", "春眠不觉晓"]
    assert evaluate.read_documents(tmp_path / "c.parquet") == ["处处闻啼鸟"]
    (tmp_path / "d.jsonl").write_text('{"text": "夜来风雨声"}\n{"body": "花落知多少"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="line 2"):
        evaluate.read_documents(tmp_path / "d.jsonl")


def test_a_wrong_input_is_one_error_line(tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    assert evaluate.main(["--ckpt", str(tmp_path), "--text", str(empty)]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"error: {empty} holds no text"
    assert evaluate.main(["--ckpt", str(tmp_path)]) == 2
    assert "either --data" in capsys.readouterr().err
