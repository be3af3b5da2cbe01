"""`gptflow chat`: talk to a chat model in the terminal, or in the browser with --web.

    gptflow chat models:/gptflow-demo-chat@champion
    gptflow chat runs/demo-chat --temperature 0 --system "你是一位诗人"
    gptflow chat models:/gptflow-qwen3-0.6b-chat/2 --web --port 7860     # a chat page at http://127.0.0.1:7860

MODEL takes what `gptflow sample --model` takes: a registered version, a run id, or a run or checkpoint folder. A model
fine-tuned on conversations (the finetune-chat flow) answers; one whose vocabulary lacks the chat template's tokens
is refused. In the terminal each line is a message and the reply streams back; `/reset` starts a new conversation,
`/exit` or the end of input (Ctrl-D) ends. The oldest turns are left out once a conversation outgrows the model's
context. --web serves a chat page (Gradio) on --host and --port until Ctrl-C. Registered versions come from
pipelines.yaml's tracking server (--config) or MLFLOW_TRACKING_URI.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from gpt.chat import ChatFormat, check_chat_model, stream_reply
from gpt.checkpoint import CheckpointError, read_meta
from gpt.decoding import CausalLM
from gpt.errors import FixableError
from gpt.sample import SampleOptions, load_for_sampling
from tasks.config import load_pipelines
from tasks.registry import is_tracked, model_client, model_folder

RESET, EXIT = "/reset", "/exit"


class ChatPageError(FixableError, RuntimeError):
    """The chat page cannot listen where it was asked to."""


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    opts = SampleOptions(
        max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k or None,
        top_p=args.top_p, seed=args.seed,
    )  # fmt: skip
    system = [{"role": "system", "content": args.system}] if args.system else []
    try:
        model, chat, path = load_chat(args.model, Path(args.config), args.device)
        check_chat_model(model, read_meta(path), chat)
    except (CheckpointError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"# {path} ({chat.tokenizer.name} tokenizer, {chat.template} template)", file=sys.stderr)
    try:
        if args.web:
            serve_page(model, chat, opts, system, args.host, args.port)
        else:
            talk(model, chat, opts, system)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    return 0


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gptflow chat", description=__doc__.splitlines()[0])
    parser.add_argument("model", help="models:/NAME@ALIAS, models:/NAME/VERSION, a run id or a folder")
    parser.add_argument("--config", default="pipelines.yaml")
    parser.add_argument("--system", default="", help="a system message that opens every conversation")
    parser.add_argument("--max-new-tokens", type=int, default=200, help="the longest reply, in tokens")
    parser.add_argument("--temperature", type=float, default=0.8, help="0 is greedy")
    parser.add_argument("--top-k", type=int, default=200, help="0 disables")
    parser.add_argument("--top-p", type=float, default=None, help="nucleus sampling, e.g. 0.95")
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--web", action="store_true", help="serve a chat page instead of talking in the terminal")
    parser.add_argument("--host", default="127.0.0.1", help="the address the chat page listens on")
    parser.add_argument("--port", type=int, default=7860)
    return parser


def load_chat(ref: str, config: Path, device: str) -> tuple[CausalLM, ChatFormat, Path]:
    """The model of `ref`, its chat format and its checkpoint folder; pipelines.yaml is read only for a registered
    version or a run, whose tracking server it names."""
    client = model_client(load_pipelines(config), [ref]) if is_tracked(ref) else None
    model, tokenizer, path = load_for_sampling(model_folder(client, ref), device)
    return model, ChatFormat.of(tokenizer), path


def talk(model: CausalLM, chat: ChatFormat, opts: SampleOptions, system: list[dict]) -> None:
    """The conversation in the terminal: a reply streamed to stdout for each line of stdin."""
    prompt = "> " if sys.stdin.isatty() else ""
    print(f"# {RESET} starts a new conversation, {EXIT} or Ctrl-D ends", file=sys.stderr)
    messages = list(system)
    while (line := read_line(prompt)) is not None and line.strip() != EXIT:
        if line.strip() == RESET:
            messages = list(system)
            print("# new conversation", file=sys.stderr)
        elif line.strip():
            messages.append({"role": "user", "content": line})
            reply = show(stream_reply(model, chat, messages, opts))
            messages.append({"role": "assistant", "content": reply})


def read_line(prompt: str) -> str | None:
    """A line of stdin, None at its end."""
    try:
        return input(prompt)
    except EOFError:
        if prompt:
            print()
        return None


def show(pieces: Iterator[str]) -> str:
    """Print a reply as it comes, then a blank line; the whole reply."""
    reply = []
    for piece in pieces:
        print(piece, end="", flush=True)
        reply.append(piece)
    print("\n", flush=True)
    return "".join(reply)


def serve_page(
    model: CausalLM, chat: ChatFormat, opts: SampleOptions, system: list[dict], host: str, port: int
) -> None:
    """A Gradio chat page on host:port, each reply streamed into it, until Ctrl-C."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    import gradio as gr

    def respond(message: str, history: list[dict]) -> Iterator[str]:
        messages = [*system, *page_turns(history), {"role": "user", "content": message}]
        reply = ""
        for piece in stream_reply(model, chat, messages, opts):
            reply += piece
            yield reply

    page = gr.ChatInterface(respond, title="gptflow chat", analytics_enabled=False)
    try:
        _, url, _ = page.launch(
            server_name=host, server_port=port, share=False, ssr_mode=False, prevent_thread_lock=True, quiet=True
        )
    except OSError:
        raise ChatPageError(
            f"cannot serve the chat page on {host}:{port}: the port is taken by another program (or the address is "
            "not this machine's); pass another --port (or --host)"
        ) from None
    print(f"chat page at {url} (Ctrl-C stops)", flush=True)
    try:
        page.block_thread()
    finally:
        page.close()


def page_turns(history: list) -> list[dict]:
    """The user's and the assistant's turns of the page's history (which the browser sends), as text: other roles
    (the system message is the server's) and attached files are left out."""
    return [
        {"role": message["role"], "content": as_text(message.get("content"))}
        for message in history
        if isinstance(message, dict) and message.get("role") in ("user", "assistant")
    ]


def as_text(content) -> str:
    """A message's text: Gradio's content is a string or a list of parts, of which the text parts count."""
    if isinstance(content, str):
        return content
    parts = content if isinstance(content, list) else []
    return "".join(p["text"] for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str))
