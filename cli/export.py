"""`gptflow export`: a model as a Hugging Face folder that transformers loads as it is.

    gptflow export models:/gptflow-demo@champion --out export/gptflow-demo
    gptflow export runs/poetry-char --out export/poetry-char       # a run folder (its best checkpoint) or step-N

The folder holds model.safetensors and config.json (GPT2LMHeadModel for the gpt2 family, Qwen3ForCausalLM for the
qwen3 family), and the model's tokenizer as tokenizer.json with tokenizer_config.json: GPT-2's, the trained BPE, or
the character vocabulary. Then

    from transformers import AutoModelForCausalLM, AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained("export/gptflow-demo")
    model = AutoModelForCausalLM.from_pretrained("export/gptflow-demo")

MODEL takes what `gptflow sample --model` takes; registered versions come from pipelines.yaml's tracking server
(--config) or MLFLOW_TRACKING_URI.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gpt.hf import export_checkpoint
from tasks.config import load_pipelines
from tasks.registry import client_for, is_tracked, model_folder


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="gptflow export", description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", help="models:/NAME@ALIAS, models:/NAME/VERSION, a run id, a run or checkpoint folder")
    parser.add_argument("--out", required=True, help="the folder to write (created; files in it are replaced)")
    parser.add_argument("--config", default="pipelines.yaml", help="pipelines.yaml, for the tracking server")
    args = parser.parse_args(argv)
    client = client_for(load_pipelines(Path(args.config))) if is_tracked(args.model) else None
    ckpt = model_folder(client, args.model)
    folder = export_checkpoint(ckpt, Path(args.out))
    print(f"exported {ckpt} to {folder}: " + ", ".join(sorted(p.name for p in folder.iterdir())))
    return 0
