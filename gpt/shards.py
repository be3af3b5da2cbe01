"""Token shards and the dataset manifest: the one place that writes and reads the on-disk token format.

A shard file is a 1024-byte header of 256 int32 words, then the tokens:
    word 0      magic 20261126                 word 4-5  token count (int64)
    word 1      format version (1)             word 6-7  0 (older files: the count of a document-end index of
    word 2      bytes per token (2 = uint16,             uint64 offsets after the tokens; read past, never used)
                4 = uint32; uint32 when the vocabulary exceeds 65,535)
Documents are separated by the end-of-text token.

A conversation dataset (tasks/corpus/chat_tokens.py) also holds, per split, masks beside its shards (shards of 0
and 1: whether each token is trained on) and an index of its conversations, listed under the manifest's `chat`.

A dataset folder holds the shards, tokenizer.json and manifest.json, written last:
    {"format": "gptflow-tokens", "version": 1, "tokenizer": "gpt2", "vocab_size": 50257, "dtype": "uint16",
     "splits": {"train": [{"file": "train-00000.bin", "tokens": 1003854, "sha256": "..."}], "val": [...]},
     "created_by": "<the command that rebuilds this folder>"}

    write_shard(path, tokens, dtype)            # atomic; returns the manifest entry (ShardWriter: in pieces)
    ds = TokenDataset.open("data/shakespeare_char")   # validates every header against the manifest
    ds = TokenDataset.open(folder, verify=True)         # and reads every shard: sha256 and token ids checked
    tokens = ds.tokens("train", 0)                      # a read-only memory map, nothing loaded
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gpt.atomic import temporary_name, write_text_atomic
from gpt.errors import FixableError
from gpt.hashing import sha256_file
from gpt.provenance import package_versions
from gpt.tokenizer import Tokenizer, load_tokenizer

MAGIC = 20261126
VERSION = 1
HEADER_WORDS = 256
HEADER_BYTES = HEADER_WORDS * 4
DTYPES = {2: np.dtype(np.uint16), 4: np.dtype(np.uint32)}
MANIFEST = "manifest.json"
TOKENIZER_FILE = "tokenizer.json"
VERIFY_BLOCK = 1 << 22  # bytes read at a time when verifying; a multiple of every token width


class ShardError(FixableError, RuntimeError):
    """A shard or manifest that does not match what was written; the message says how to rebuild it."""


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 while every id fits, else uint32."""
    return DTYPES[2] if vocab_size <= 65535 else DTYPES[4]


class ShardWriter:
    """One shard written in pieces, so that a shard never has to fit in memory:

    with ShardWriter(path, np.uint16) as shard:
        shard.add(tokens)
    shard.entry                          # the manifest entry, once closed

    The tokens go to a temporary file behind a blank header; closing fills in the header, hashes the file and renames
    it into place. An error leaves nothing behind."""

    def __init__(self, path: Path, dtype: np.dtype):
        self.path, self.dtype = Path(path), np.dtype(dtype)
        if self.dtype not in DTYPES.values():
            raise ValueError(f"token dtype must be uint16 or uint32, got {self.dtype}")
        self.tmp = self.path.parent / temporary_name(f".{self.path.name}")
        self.fh = open(self.tmp, "wb")  # noqa: SIM115 - closed in close()
        self.fh.write(bytes(HEADER_BYTES))
        self.num_tokens = 0
        self.entry: dict = {}

    def add(self, tokens: np.ndarray) -> None:
        tokens = np.asarray(tokens)
        if tokens.size and (tokens.min() < 0 or tokens.max() > np.iinfo(self.dtype).max):
            raise ValueError(f"token ids out of range for {self.dtype}: {tokens.min()}..{tokens.max()}")
        self.fh.write(tokens.astype(self.dtype, copy=False).tobytes())
        self.num_tokens += tokens.size

    def close(self) -> dict:
        header = np.zeros(HEADER_WORDS, dtype=np.int32)
        header[0], header[1], header[2] = MAGIC, VERSION, self.dtype.itemsize
        header[4:6].view(np.int64)[0] = self.num_tokens
        self.fh.seek(0)
        self.fh.write(header.tobytes())
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        os.replace(self.tmp, self.path)
        self.entry = {"file": self.path.name, "tokens": self.num_tokens, "sha256": sha256_file(self.path)}
        return self.entry

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, kind, error, trace) -> None:
        if kind is None:
            self.close()
        else:
            self.fh.close()
            self.tmp.unlink(missing_ok=True)


def write_shard(path: Path, tokens: np.ndarray, dtype: np.dtype) -> dict:
    """Write one shard atomically; returns its manifest entry (file, tokens, sha256)."""
    with ShardWriter(path, dtype) as shard:
        shard.add(tokens)
    return shard.entry


@dataclass(frozen=True)
class ShardHeader:
    dtype: np.dtype
    num_tokens: int


def read_header(path: Path, rebuild_hint: str = "") -> ShardHeader:
    """Parse and check a shard's header and size; a bad magic or a truncated file raises ShardError."""
    fix = f" Rebuild the dataset: {rebuild_hint}" if rebuild_hint else ""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            raw = fh.read(HEADER_BYTES)
    except FileNotFoundError:
        raise ShardError(f"shard {path} is missing.{fix}") from None
    if len(raw) < HEADER_BYTES:
        raise ShardError(f"shard {path} is truncated: {size} bytes, shorter than its header.{fix}")
    header = np.frombuffer(raw, dtype=np.int32)
    if header[0] != MAGIC:
        raise ShardError(f"{path} is not a token shard (magic {header[0]}, expected {MAGIC}).{fix}")
    if header[1] != VERSION:
        raise ShardError(f"shard {path} has format version {header[1]}; this version reads {VERSION}.{fix}")
    if header[2] not in DTYPES:
        raise ShardError(f"shard {path} declares {header[2]} bytes per token (2 or 4 allowed).{fix}")
    dtype = DTYPES[int(header[2])]
    n, index = (int(header[4:6].view(np.int64)[0]), int(header[6:8].view(np.int64)[0]))
    expected = HEADER_BYTES + n * dtype.itemsize + index * 8
    if size != expected:
        state = "truncated" if size < expected else "longer than its header says"
        ends = f" and {index} document ends" if index else ""
        raise ShardError(
            f"shard {path} is {state}: the header promises {n} tokens{ends} "
            f"({expected} bytes) but the file has {size} bytes.{fix}"
        )
    return ShardHeader(dtype, n)


def open_tokens(path: Path, header: ShardHeader | None = None, random_access: bool = False) -> np.ndarray:
    """A read-only memory map of a shard's tokens. With random_access the kernel reads no pages ahead, so
    scattered reads (training windows) do not pull the surrounding megabytes from disk on every read."""
    header = header or read_header(path)
    with open(path, "rb") as fh:
        mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    if random_access and hasattr(mmap, "MADV_RANDOM"):
        mm.madvise(mmap.MADV_RANDOM)
    return np.frombuffer(mm, dtype=header.dtype, count=header.num_tokens, offset=HEADER_BYTES)


def verify_shard(path: Path, header: ShardHeader, sha256: str, vocab_size: int, fix: str = "") -> None:
    """Read a shard once: raise ShardError when its bytes differ from `sha256` or a token id is not below
    `vocab_size` (a wrong id would otherwise fail deep inside the model, naming no shard)."""
    digest, largest = hashlib.sha256(), 0
    token_bytes = header.num_tokens * header.dtype.itemsize
    with open(path, "rb") as fh:
        digest.update(fh.read(HEADER_BYTES))
        done = 0
        while block := fh.read(VERIFY_BLOCK):
            digest.update(block)
            tokens = block[: max(0, token_bytes - done)]  # older shards may hold a document index after the tokens
            if tokens:
                largest = max(largest, int(np.frombuffer(tokens, dtype=header.dtype).max()))
            done += len(block)
    if digest.hexdigest() != sha256:
        raise ShardError(
            f"shard {path} does not match its sha256 in the manifest: it changed after it was written.{fix}"
        )
    if largest >= vocab_size:
        raise ShardError(
            f"shard {path} holds token id {largest}, past the vocabulary of {vocab_size} in the manifest.{fix}"
        )


def write_manifest(folder: Path, tokenizer: Tokenizer, splits: dict[str, list[dict]], created_by: str, **extra):
    """Write tokenizer.json, then manifest.json: the dataset's completion marker, written last."""
    (folder / TOKENIZER_FILE).write_text(json.dumps(tokenizer.spec(), ensure_ascii=False), encoding="utf-8")
    manifest = {
        "format": "gptflow-tokens",
        "version": VERSION,
        "tokenizer": tokenizer.name,
        "vocab_size": tokenizer.n_vocab,
        "eot_token": tokenizer.eot_token,
        "dtype": token_dtype(tokenizer.n_vocab).name,
        "splits": splits,
        "created_by": created_by,
        "versions": package_versions(),
        **extra,
    }
    write_text_atomic(folder / MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False))
    return manifest


class TokenDataset:
    """A finished dataset folder, checked against its manifest when opened."""

    def __init__(self, folder: Path, manifest: dict, headers: dict[str, list[ShardHeader]]):
        self.folder, self.manifest, self.headers = folder, manifest, headers

    @classmethod
    def open(cls, folder: str | Path, verify: bool = False) -> TokenDataset:
        """The dataset at `folder`, every shard header checked against the manifest; with `verify`, every shard is
        also read once: its sha256 must match the manifest's and its token ids must be below the vocabulary size."""
        folder = Path(folder)
        path = folder / MANIFEST
        if not path.is_file():
            raise ShardError(
                f"{folder} has no {MANIFEST}, so it is not a finished dataset. Build it with "
                "`python -m gpt.prepare_text INPUT.txt --tokenizer char --out DIR` or the build-corpus flow."
            )
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
            hint = manifest.get("created_by", "")
            dtype = np.dtype(manifest["dtype"])
            splits = manifest["splits"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ShardError(f"{path} is not a valid manifest ({e!r}); rebuild the dataset.") from e
        fix = f" Rebuild the dataset: {hint}" if hint else ""
        if dtype != token_dtype(manifest["vocab_size"]):
            raise ShardError(f"{path}: dtype {dtype} does not fit vocab_size {manifest['vocab_size']}.{fix}")
        headers: dict[str, list[ShardHeader]] = {}
        for split, entries in splits.items():
            headers[split] = []
            for entry in entries:
                shard = folder / entry["file"]
                header = read_header(shard, hint)
                if header.dtype != dtype or header.num_tokens != entry["tokens"]:
                    raise ShardError(
                        f"shard {shard} disagrees with {path}: it holds {header.num_tokens} {header.dtype} "
                        f"tokens, the manifest lists {entry['tokens']} {dtype}.{fix}"
                    )
                if verify:
                    verify_shard(shard, header, entry["sha256"], manifest["vocab_size"], fix)
                headers[split].append(header)
        for split, entries in manifest.get("chat", {}).get("masks", {}).items():
            for entry, tokens in zip(entries, headers[split], strict=True):
                shard = folder / entry["file"]
                header = read_header(shard, hint)
                if header.num_tokens != tokens.num_tokens:
                    raise ShardError(
                        f"mask {shard} holds {header.num_tokens} values for {tokens.num_tokens} tokens.{fix}"
                    )
                if verify:
                    verify_shard(shard, header, entry["sha256"], 2, fix)
        return cls(folder, manifest, headers)

    @property
    def vocab_size(self) -> int:
        return int(self.manifest["vocab_size"])

    def tokenizer(self) -> Tokenizer:
        return load_tokenizer(self.folder / TOKENIZER_FILE)

    def tokenizer_spec(self) -> dict:
        """The saved tokenizer description, read without building the tokenizer (no vocabulary download)."""
        return json.loads((self.folder / TOKENIZER_FILE).read_text(encoding="utf-8"))

    def shard_paths(self, split: str) -> list[Path]:
        if split not in self.manifest["splits"]:
            raise ShardError(f"{self.folder} has no {split!r} split; it has {list(self.manifest['splits'])}")
        return [self.folder / e["file"] for e in self.manifest["splits"][split]]

    def num_tokens(self, split: str) -> int:
        return sum(h.num_tokens for h in self.headers[split])

    def digest(self, split: str) -> str:
        """sha256 over the split's shard digests in order: equal for the same tokens, whatever the folder."""
        entries = self.manifest["splits"].get(split, [])
        return hashlib.sha256("".join(e["sha256"] for e in entries).encode()).hexdigest()

    def tokens(self, split: str, index: int) -> np.ndarray:
        return open_tokens(self.shard_paths(split)[index], self.headers[split][index])

    @property
    def chat(self) -> dict | None:
        """A conversation dataset's template, tasks, masks and index (None: a dataset of documents)."""
        return self.manifest.get("chat")

    def mask(self, split: str, index: int) -> np.ndarray:
        """A conversation dataset's mask beside shard `index` of a split: 1 where the token is trained on."""
        path = self.folder / self.chat["masks"][split][index]["file"]
        return open_tokens(path, random_access=True)

    def corpus_pieces(self, split: str) -> dict[str, list[tuple[int, int, int]]]:
        """Each corpus' tokens in a split as (shard, begin, end) ranges, from the manifest's `corpora` entry."""
        ranges = self.manifest.get("corpora", {}).get(split)
        if ranges is None:
            hint = self.manifest.get("created_by", "the build-corpus flow")
            raise ShardError(
                f"{self.folder / MANIFEST} does not say where each corpus' tokens are (built before data mixtures "
                f"were known). Rebuild the dataset: {hint}"
            )
        ends = np.cumsum([h.num_tokens for h in self.headers[split]])
        starts = ends - [h.num_tokens for h in self.headers[split]]
        pieces: dict[str, list[tuple[int, int, int]]] = {}
        for corpus, begin, end in ranges:
            for shard in np.flatnonzero((starts < end) & (ends > begin)).tolist():
                first = int(max(begin, starts[shard]) - starts[shard])
                pieces.setdefault(corpus, []).append((shard, first, int(min(end, ends[shard]) - starts[shard])))
        return pieces

    def read(self, split: str, begin: int, end: int) -> np.ndarray:
        """Tokens [begin, end) of a split, across its shards."""
        pieces, offset = [], 0
        for index in range(len(self.headers[split])):
            tokens = self.tokens(split, index)
            if begin < offset + len(tokens) and end > offset:
                pieces.append(np.asarray(tokens[max(begin - offset, 0) : end - offset]))
            offset += len(tokens)
        return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int64)
