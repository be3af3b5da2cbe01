import subprocess
import sys
from dataclasses import asdict
from fnmatch import fnmatch

import pytest
import torch
from helpers import train

from gpt.checkpoint import save_checkpoint
from gpt.decoding import sample_next
from gpt.model import GPT, ModelConfig
from gpt.pyfunc import TextGenerator
from gpt.sample import SampleOptions, generate_texts, load_for_sampling, sample_file_name
from gpt.tokenizer import UNK, CharTokenizer


@pytest.fixture(scope="module")
def run_dir(char_dataset, tmp_path_factory):
    from helpers import tiny_settings

    from gpt.config import TrainConfig, from_dict

    out = tmp_path_factory.mktemp("sample") / "run"
    train(from_dict(TrainConfig, tiny_settings(char_dataset, out, max_iters=10)))
    return out


def test_sampling_is_seeded_and_streams(run_dir):
    model, tok, path = load_for_sampling(run_dir, "cpu")
    assert path.name.startswith("step-")
    streamed = []
    opts = SampleOptions(num_samples=2, max_new_tokens=30, seed=7)
    texts = generate_texts(model, tok, "ROMEO:", opts, lambda i, t: streamed.append((i, t)))
    assert len(texts) == 2 and all(len(t) == 30 for t in texts)
    assert "".join(t for i, t in streamed if i == 0) == texts[0]
    assert texts == generate_texts(model, tok, "ROMEO:", opts)
    no_cache = generate_texts(model, tok, "ROMEO:", SampleOptions(1, 20, temperature=0, use_cache=False))
    assert no_cache == generate_texts(model, tok, "ROMEO:", SampleOptions(1, 20, temperature=0))


def test_cli_with_prompt_file(run_dir, tmp_path):
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("KING:", encoding="utf-8")
    cmd = [sys.executable, "-m", "gpt.sample", "--ckpt", str(run_dir / "step-10"), "--start", f"FILE:{prompt}",
           "--num-samples", "2", "--max-new-tokens", "25", "--seed", "1"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.count("KING:") == 2 and "---------------" in out.stdout
    assert "step-10" in out.stderr


def test_cli_errors_are_one_clear_line(run_dir, tmp_path):
    from gpt.sample import main

    assert main(["--ckpt", str(tmp_path)]) == 2
    assert main(["--ckpt", str(run_dir), "--start", "AI社会价值"]) == 2  # a Shakespeare char model knows no Chinese


def unk_loving_model(tokenizer: CharTokenizer) -> GPT:
    """A GPT whose every position's logits favour the unknown token by far: its final norm outputs one vector,
    which the unknown token's (tied) embedding row points along."""
    torch.manual_seed(0)
    model = GPT(ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=16, vocab_size=tokenizer.n_vocab)).eval()
    with torch.no_grad():
        direction = torch.randn(16)
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.copy_(direction)
        model.lm_head.weight[tokenizer.unk_token] = 10 * direction
    return model


def test_sampling_never_yields_the_unknown_token(tmp_path):
    tokenizer = CharTokenizer(list("abc \n"), unk=UNK)  # no end-of-text: every text runs to its length
    model = unk_loving_model(tokenizer)
    logits, _ = model(torch.tensor([tokenizer.encode("ab")]))
    assert int(sample_next(logits[:, -1, :], temperature=0)) == tokenizer.unk_token  # what an unmasked sampler picks

    for opts in (SampleOptions(3, 12, temperature=0), SampleOptions(3, 12, temperature=1.0, top_k=None, seed=3)):
        texts = generate_texts(model, tokenizer, "ab", opts)
        assert all(len(text) == 12 for text in texts)
        assert not any(UNK in text for text in texts)

    meta = {"step": 1, "model": asdict(model.config)}  # the served model (the MLflow pyfunc) samples the same way
    ckpt = save_checkpoint(tmp_path / "run", 1, model, {}, meta, tokenizer.spec())
    replies = TextGenerator(ckpt, "cpu").predict(["ab", "c"], {"max_new_tokens": 12, "temperature": 1.0, "seed": 1})
    assert all(len(reply) == 12 for reply in replies) and not any(UNK in reply for reply in replies)


def test_sample_files_sort_in_step_order():
    names = [sample_file_name(step) for step in (0, 300, 1200, 10_000, 250_000)]
    assert sorted(names) == names and all(fnmatch(name, "step-*.txt") for name in names)
    assert names[2] == "step-0001200.txt"
