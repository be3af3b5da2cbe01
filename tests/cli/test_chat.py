"""`gptflow chat`: a conversation in the terminal, a model that cannot chat refused, and the chat page in a browser."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import pytest
from browser import browser_page
from chat_model import POEM, TITLE, make_chat_checkpoint

from gpt.checkpoint import save_checkpoint
from gpt.model import ModelConfig, create_model
from gpt.model_config import padded_vocab_size
from gpt.tokenizer import EOT, UNK, CharTokenizer

ENV = {**os.environ, "DO_NOT_TRACK": "true", "MLFLOW_DISABLE_TELEMETRY": "true"}
GPTFLOW = str(Path(sys.executable).parent / "gptflow")


@pytest.fixture(scope="module")
def chat_ckpt(tmp_path_factory) -> Path:
    return make_chat_checkpoint(tmp_path_factory.mktemp("chat"))


def chat(*args: str, lines: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [GPTFLOW, "chat", *args], input=lines, capture_output=True, text=True, encoding="utf-8", env=ENV, timeout=120
    )


def plain_checkpoint(out_dir: Path) -> Path:
    """A model pretrained on text alone, its vocabulary rounded up as training rounds it (room for the chat
    template's tokens, never trained)."""
    tokenizer = CharTokenizer(sorted(set(TITLE + POEM)), eot=EOT, unk=UNK)
    vocab = padded_vocab_size(tokenizer.n_vocab)
    config = ModelConfig(n_layer=1, n_head=1, n_embd=8, block_size=16, vocab_size=vocab, dropout=0.0)
    meta = {
        "step": 0, "val_loss": 0.0, "model": asdict(config), "config": {"seed": 0},
        "dataset": {"path": "", "tokenizer": "char"},
    }  # fmt: skip
    return save_checkpoint(out_dir, 0, create_model(config).eval(), {}, meta, tokenizer.spec())


@pytest.mark.slow
def test_the_terminal_streams_a_reply_per_line_and_reset_starts_over(chat_ckpt):
    out = chat(str(chat_ckpt), "--temperature", "0", lines=f"{TITLE}\n再写一首\n/reset\n{TITLE}\n/exit\n{TITLE}\n")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"{POEM}\n\n")  # the first reply: the poem of its title
    second = out.stdout[len(POEM) + 2 : -(len(POEM) + 2)]
    assert second.strip() and second.endswith("\n\n")  # the second reply, to the second line
    assert out.stdout.endswith(f"\n\n{POEM}\n\n")  # after /reset, the title alone again: the poem again
    assert out.stdout.count(POEM) == 2  # nothing answered after /exit
    assert "# new conversation" in out.stderr
    assert "> " not in out.stdout  # no prompt when stdin is not a terminal


@pytest.mark.slow
def test_a_model_never_fine_tuned_on_conversations_or_a_missing_one_is_one_error_line(tmp_path):
    plain = chat(str(plain_checkpoint(tmp_path / "plain")), lines=f"{TITLE}\n")
    missing = chat(str(tmp_path / "missing"), lines=f"{TITLE}\n")
    for out in (plain, missing):
        assert out.returncode == 2 and out.stdout == ""
        assert len(out.stderr.splitlines()) == 1 and out.stderr.startswith("error: "), out.stderr
    assert "never fine-tuned on conversations" in plain.stderr


@contextmanager
def chat_page(ckpt: Path, log: Path) -> Iterator[str]:
    """`gptflow chat --web` on a free port: the page's URL once it answers; stopped with Ctrl-C (SIGINT), which
    must end it with status 0."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/"
    cmd = [GPTFLOW, "chat", str(ckpt), "--temperature", "0", "--web", "--port", str(port)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=ENV, start_new_session=True)
    try:
        wait_for_page(url, proc, log)
        yield url
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0, log.read_text(encoding="utf-8")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wait_for_page(url: str, proc: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text(encoding="utf-8")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"no chat page at {url} after {timeout} s:\n{log.read_text(encoding='utf-8')}")


@pytest.mark.slow
def test_the_chat_page_streams_the_reply_into_the_browser(chat_ckpt, tmp_path):
    log = tmp_path / "chat-page.log"
    with chat_page(chat_ckpt, log) as url, browser_page() as page:
        page.goto(url)
        box = page.get_by_role("textbox")
        box.fill(TITLE)
        box.press("Enter")
        replies = page.locator('[data-testid="bot"]')
        replies.filter(has_text=POEM.splitlines()[0]).first.wait_for()
        replies.filter(has_text=POEM.splitlines()[-1]).first.wait_for()  # streamed to its end
    assert f"chat page at {url}" in log.read_text(encoding="utf-8")
