"""`gptflow export`: a model as a Hugging Face folder that transformers loads as it is.

    gptflow export models:/gptflow-demo@champion --out export/gptflow-demo
    gptflow export runs/poetry-char --out export/poetry-char       # a run folder (its best checkpoint) or step-N

The folder holds model.safetensors and config.json (GPT2LMHeadModel for the gpt2 family, Qwen3ForCausalLM for the
qwen3 family), generation_config.json (generate samples as `gptflow sample` does and stops at the model's context),
the model's tokenizer as tokenizer.json with tokenizer_config.json (GPT-2's, the trained BPE, or the character
vocabulary), and README.md, a model card: what the model is, the data and tokenizer it was trained with, its bits per
character (a registered version's, with the text they were measured on), how it was trained and how to load it. Then

    from transformers import AutoModelForCausalLM, AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained("export/gptflow-demo")
    model = AutoModelForCausalLM.from_pretrained("export/gptflow-demo")

MODEL takes what `gptflow sample --model` takes; registered versions come from pipelines.yaml's tracking server
(--config) or MLFLOW_TRACKING_URI.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path

from safetensors import safe_open

from gpt.checkpoint import read_meta
from gpt.hf import export_checkpoint
from gpt.tokenizer import Tokenizer, load_tokenizer
from tasks.config import load_pipelines
from tasks.registry import model_client, model_folder
from tasks.training.evaluate import tracked_model
from tasks.training.lineage import training_input
from tasks.training.run import RUN_RECORD

RUN_ID = re.compile(r"[0-9a-f]{32}")
FAMILIES = {"gpt2": "GPT-2 (GPT2LMHeadModel)", "qwen3": "Qwen3 (Qwen3ForCausalLM)"}
CJK = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x2FFFF))


def writes_chinese(tokenizer: Tokenizer) -> bool:
    """Whether more of the vocabulary's tokens hold a Chinese character than a Latin letter."""
    chinese = latin = 0
    for i in range(tokenizer.n_vocab):
        text = tokenizer.decode_bytes([i]).decode("utf-8", errors="ignore")
        if any(lo <= ord(c) <= hi for c in text for lo, hi in CJK):
            chinese += 1
        elif any(c.isascii() and c.isalpha() for c in text):
            latin += 1
    return chinese > latin


def tracked_facts(client, ckpt: Path) -> dict:
    """What MLflow knows of a downloaded model: its registered version (name, number, tags) and its run's preset
    and training dataset."""
    model_id, run_id = tracked_model(ckpt)
    if run_id is None or not RUN_ID.fullmatch(run_id):  # the id goes into a registry search
        return {}
    run = client.get_run(run_id)
    facts = {"preset": run.data.tags.get("gptflow.preset", "")}
    for entry in run.inputs.dataset_inputs if run.inputs else []:
        if any(tag.key == "mlflow.data.context" and tag.value == "training" for tag in entry.tags):
            facts |= {"dataset": entry.dataset.name, "dataset_digest": entry.dataset.digest}
    versions = [v for v in client.search_model_versions(f"run_id = '{run_id}'") if v.model_id in (None, model_id)]
    if versions:
        version = max(versions, key=lambda v: int(v.version))
        facts |= {"title": f"{version.name} (version {version.version})"}
        facts |= {key: version.tags[key] for key in ("preset", "val_bpc", "eval_set") if version.tags.get(key)}
    return facts


def local_facts(ckpt: Path, meta: dict) -> dict:
    """What a local run knows of itself: its preset (run.json) and its dataset, named as MLflow names it."""
    facts = {}
    if (record := ckpt.parent / RUN_RECORD).is_file():
        facts["preset"] = json.loads(record.read_text(encoding="utf-8")).get("preset", "")
    if (data := Path(meta["dataset"]["path"])).is_dir():
        dataset = training_input(data).dataset
        facts |= {"dataset": dataset.name, "dataset_digest": dataset.digest}
    return facts


def parameters(folder: Path) -> int:
    """The parameters an exported model holds (its model.safetensors' tensors)."""
    with safe_open(folder / "model.safetensors", "pt") as weights:
        return sum(math.prod(weights.get_slice(name).get_shape()) for name in weights.keys())  # noqa: SIM118


def describe_tokenizer(tokenizer: Tokenizer) -> str:
    kind, n = tokenizer.spec()["type"], f"{tokenizer.n_vocab:,}"
    about = {
        "char": f"One token per character: {n} tokens",
        "tiktoken": f"tiktoken's `{tokenizer.name}` encoding: {n} tokens",
        "bpe": f"A byte-level BPE trained on the data (`{tokenizer.name}`): {n} tokens",
        "hf": f"The base model's own tokenizer, unchanged (`{tokenizer.name}`): {n} tokens",
    }[kind]
    if tokenizer.eot_token is not None:
        about += f"; `{tokenizer.decode([tokenizer.eot_token])}` (id {tokenizer.eot_token}) ends a document"
    return about + "."


def usage_prompt(tokenizer: Tokenizer, cfg: dict) -> str:
    """The prompt of the card's example: the run's sample prompt, else a new document (as `gptflow sample`)."""
    if cfg.get("sample_prompt"):
        return cfg["sample_prompt"]
    return "\n" if tokenizer.eot_token is None else tokenizer.decode([tokenizer.eot_token])


def origin(cfg: dict) -> str:
    """Where the training started: from scratch, from another model's weights, or from an earlier version."""
    start = cfg.get("init_from", "scratch")
    if start == "scratch":
        return "from scratch"
    return "on from an earlier version" if start in ("continue", "resume") else f"from the weights of `{start}`"


def model_card(folder: Path, meta: dict, tokenizer: Tokenizer, facts: dict) -> str:
    """README.md of an exported model: front matter the Hugging Face hub reads, then the model, its data, tokenizer,
    score, training and use. `facts` adds what MLflow or the run folder knows (title, preset, dataset,
    dataset_digest, val_bpc, eval_set)."""
    model, cfg, data = meta["model"], meta["config"], meta["dataset"]
    family = model.get("arch", "gpt2")
    tags = ["gptflow", family, "character-level" if tokenizer.spec()["type"] == "char" else "bpe"]
    front = ["---", "library_name: transformers", "pipeline_tag: text-generation"]
    front += ["language:", "- zh"] if writes_chinese(tokenizer) else []
    front += ["tags:", *[f"- {tag}" for tag in tags], "---"]
    dataset = facts.get("dataset") or Path(data["path"]).name
    digest = facts.get("dataset_digest") or data["train_sha256"][:16]
    optimizer = "Muon for the hidden matrices with AdamW" if cfg.get("optimizer") == "muon" else "AdamW"
    prompt = json.dumps(usage_prompt(tokenizer, cfg), ensure_ascii=False)  # JSON strings are Python literals too
    path = json.dumps(str(folder), ensure_ascii=False)
    lines = [
        *front, "", f"# {facts.get('title') or folder.name}", "",
        f"A {FAMILIES[family]} causal language model trained with gptflow {origin(cfg)}: {model['n_layer']} layers, "
        f"width {model['n_embd']}, {model['n_head']} attention heads, {parameters(folder):,} parameters, a context "
        f"of {model['block_size']} tokens.", "",
        "## Training data", "",
        f"Dataset `{dataset}` (digest `{digest}`): {data['train_tokens']:,} training tokens.", "",
        "## Tokenizer", "", describe_tokenizer(tokenizer), "",
    ]  # fmt: skip
    scores = []
    if facts.get("val_bpc"):
        scores += [f"{float(facts['val_bpc']):.4f} bits per character on the evaluation text `{facts['eval_set']}` "
                   "(lower is better; comparable across tokenizers).", ""]  # fmt: skip
    if meta.get("val_loss") is not None:
        scores += [f"Validation loss {meta['val_loss']:.4f} (nats per token of its own tokenizer).", ""]
    lines += ["## Evaluation", "", *scores] if scores else []
    schedule = f"{cfg.get('lr_schedule', 'cosine')} schedule, {cfg['warmup_iters']} warmup steps"
    lines += [
        "## Training", "",
        *([f"Preset `{facts['preset']}`."] if facts.get("preset") else []),
        f"The checkpoint of step {meta['step']:,} of {cfg['max_iters']:,}, after {meta.get('tokens_seen', 0):,} "
        f"tokens; {optimizer} (learning rate {cfg['lr']:g}, {schedule}), batches of {cfg['batch_size']} x "
        f"{cfg['grad_accum']} sequences.", "",
        "## Usage", "", "```python", "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
        f"tokenizer = AutoTokenizer.from_pretrained({path})",
        f"model = AutoModelForCausalLM.from_pretrained({path})",
        f'ids = tokenizer({prompt}, return_tensors="pt").input_ids',
        "print(tokenizer.decode(model.generate(ids)[0]))", "```", "",
        "`generate` samples as `gptflow sample` does (generation_config.json: temperature, top-k) and stops at the "
        f"context of {model['block_size']} tokens; pass `do_sample=False` for greedy decoding.", "",
    ]  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="gptflow export", description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", help="models:/NAME@ALIAS, models:/NAME/VERSION, a run id, a run or checkpoint folder")
    parser.add_argument("--out", required=True, help="the folder to write (created; files in it are replaced)")
    parser.add_argument("--config", default="pipelines.yaml", help="pipelines.yaml, for the tracking server")
    args = parser.parse_args(argv)
    client = model_client(load_pipelines(Path(args.config)), [args.model])
    ckpt = model_folder(client, args.model)
    folder = export_checkpoint(ckpt, Path(args.out))
    meta = read_meta(ckpt)
    facts = tracked_facts(client, ckpt) if client is not None else local_facts(ckpt, meta)
    card = model_card(folder, meta, load_tokenizer(ckpt / "tokenizer.json"), facts)
    (folder / "README.md").write_text(card, encoding="utf-8")
    print(f"exported {ckpt} to {folder}: " + ", ".join(sorted(p.name for p in folder.iterdir())))
    return 0
