import subprocess
import sys

import pytest
from helpers import train

from gpt.sample import SampleOptions, generate_texts, load_for_sampling


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
