"""`gptflow export`: a character model and a gpt2-vocabulary model of the gpt2 family and a character model of the
qwen3 family, trained on real Chinese sentences, exported and loaded with transformers; greedy generation there
equals `gptflow sample --temperature 0` here, generation with transformers' defaults stops at the context, and the
folder holds a model card the hub reads and files anyone may read."""

import json
import os
import stat

import pytest
import torch
import yaml
from helpers import SHARED_DATA, tiny_settings, train

from cli.export import writes_chinese
from cli.main import main as gptflow
from gpt.config import TrainConfig, from_dict
from gpt.prepare_text import prepare_text
from gpt.tokenizer import CharTokenizer, TiktokenTokenizer, load_tokenizer
from tasks.training.lineage import training_input

transformers = pytest.importorskip("transformers")

PROMPT = "我们的经济"
NEW_TOKENS = 20
BLOCK_SIZE = 32  # tiny_settings'


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
    tokenizer = load_tokenizer(data / "tokenizer.json")
    assert hf_model.config.vocab_size == tokenizer.n_vocab == len(hf_tokenizer)  # padding rows dropped

    # the pipeline's defaults (256 new tokens) end at the context instead of past GPT-2's position embeddings
    assert hf_model.generation_config.max_length == BLOCK_SIZE
    assert hf_model.generation_config.eos_token_id == tokenizer.eot_token  # gpt2's end-of-text; None for char
    torch.manual_seed(0)
    pipe = transformers.pipeline("text-generation", model=hf_model, tokenizer=hf_tokenizer)
    (generated,) = pipe(PROMPT, return_tensors=True)
    assert ids.shape[1] < len(generated["generated_token_ids"]) <= BLOCK_SIZE


def test_export_names_what_is_missing(tmp_path, capsys):
    assert gptflow(["export", str(tmp_path / "nothing"), "--out", str(tmp_path / "hf")]) == 1
    assert "holds no finished checkpoint" in capsys.readouterr().err


def test_export_writes_a_model_card_and_files_with_the_umask_s_permissions(chinese_text, tmp_path, capsys):
    data = tmp_path / "data"
    prepare_text(chinese_text, data, "char")
    schedule = {"max_iters": 10, "eval_interval": 10, "ckpt_interval": 10, "sample_prompt": "我们"}
    train(from_dict(TrainConfig, tiny_settings(data, tmp_path / "run", **schedule)))
    umask = os.umask(0o027)
    try:
        assert gptflow(["export", str(tmp_path / "run"), "--out", str(tmp_path / "hf")]) == 0
    finally:
        os.umask(umask)
    capsys.readouterr()
    files = {path.name: stat.S_IMODE(path.stat().st_mode) for path in (tmp_path / "hf").iterdir()}
    assert {"model.safetensors", "README.md", "generation_config.json", "tokenizer.json"} <= set(files)
    assert files == dict.fromkeys(files, 0o640)  # 0o666 less the umask, as open() makes them

    _, front, body = (tmp_path / "hf" / "README.md").read_text(encoding="utf-8").split("---\n", 2)
    assert yaml.safe_load(front) == {
        "library_name": "transformers", "pipeline_tag": "text-generation", "language": ["zh"],
        "tags": ["gptflow", "gpt2", "character-level"],
    }  # fmt: skip
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf")
    assert f"2 layers, width 32, 2 attention heads, {hf_model.num_parameters():,} parameters" in body
    assert f"a context of {BLOCK_SIZE} tokens" in body
    dataset = training_input(data).dataset
    assert f"Dataset `{dataset.name}` (digest `{dataset.digest}`)" in body
    assert f"One token per character: {load_tokenizer(data / 'tokenizer.json').n_vocab:,} tokens" in body
    assert "The checkpoint of step 10 of 10" in body and "AdamW (learning rate 0.001, cosine schedule" in body

    usage = body.split("```python\n", 1)[1].split("```", 1)[0]
    exec(usage, {})  # the card's example runs as it is, with transformers' defaults
    printed = capsys.readouterr().out
    assert printed.startswith("我们") and 2 < len(printed.strip()) <= BLOCK_SIZE


def test_the_card_names_chinese_only_for_a_chinese_vocabulary(chinese_text, shakespeare_text):
    assert writes_chinese(CharTokenizer.build([chinese_text.read_text(encoding="utf-8")]))
    assert not writes_chinese(CharTokenizer.build([shakespeare_text]))
    assert not writes_chinese(TiktokenTokenizer("gpt2"))
