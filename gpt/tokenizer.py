"""Tokenizers behind one interface: tiktoken encodings (gpt2, cl100k_base, o200k_base, ...), byte-level BPEs
trained on a dataset, characters, and the Hugging Face tokenizer of an open model (Qwen3's, for example).

A tokenizer is described by a small JSON-able spec that travels with datasets and checkpoints:
    {"type": "tiktoken", "name": "gpt2"}
    {"type": "bpe", "name": "bpe-32000-1a2b3c4d", "pattern": "<split regex>", "ranks": ["AA==", ...], "eot": ...}
    {"type": "char", "chars": ["\\n", " ", ...], "unk": "<|unk|>", "eot": "<|endoftext|>"}  (specials optional)
    {"type": "hf", "name": "hf-1a2b3c4d5e6f", "eot": "<|endoftext|>", "tokenizer": {...tokenizer.json},
     "config": {...tokenizer_config.json, chat template included}}

A `bpe` spec lists its tokens' bytes (base64) in merge order, and end-of-text comes after them; it encodes with
tiktoken's own BPE over those ranks, as fast as gpt2.

    tok = tokenizer_from_spec({"type": "tiktoken", "name": "gpt2"})
    ids = tok.encode("AI社会价值")
    tok.decode(ids[:3])      # never raises: a cut character becomes U+FFFD
    tok.encode_batch(["春眠不觉晓", "处处闻啼鸟"])   # arrays of ids, a batch at a time
    load_tokenizer("Qwen3-0.6B-Base/tokenizer.json")   # a Hugging Face tokenizer.json (and its tokenizer_config.json)

tiktoken downloads its vocabularies on first use; offline, set TIKTOKEN_CACHE_DIR to a folder that holds them.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import hashlib
import json
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

import numpy as np

from gpt.errors import FixableError

EOT = "<|endoftext|>"
UNK = "<|unk|>"


class Tokenizer(Protocol):
    name: str
    n_vocab: int
    eot_token: int | None
    unk_token: int | None
    """The id that stands for a character outside the vocabulary (None: there is none); text is never sampled
    with it."""

    def encode(self, text: str) -> list[int]: ...
    def encode_to_numpy(self, text: str) -> np.ndarray: ...
    def encode_batch(self, texts: list[str]) -> list[np.ndarray]: ...
    def decode(self, ids: Iterable[int]) -> str: ...
    def decode_bytes(self, ids: Iterable[int]) -> bytes: ...
    def spec(self) -> dict: ...


class VocabularyUnavailable(FixableError, RuntimeError):
    """A tiktoken vocabulary that is neither cached nor downloadable here."""


class TiktokenTokenizer:
    """A tiktoken encoding; special tokens in the text are encoded as plain text."""

    def __init__(self, name: str):
        import tiktoken

        try:
            encoding = tiktoken.get_encoding(name)
        except ValueError as e:
            raise ValueError(f"unknown tiktoken encoding {name!r}: {e}") from e
        except Exception as e:  # network errors while fetching the vocabulary
            raise VocabularyUnavailable(
                f"tiktoken could not load the {name!r} vocabulary ({e}). Offline, set TIKTOKEN_CACHE_DIR "
                "to a folder holding tiktoken's cached vocabulary files."
            ) from e
        self._use(name, encoding)

    def _use(self, name: str, encoding) -> None:
        self._enc = encoding
        self.name = name
        self.n_vocab = encoding.n_vocab
        self.eot_token = encoding.eot_token if EOT in encoding.special_tokens_set else None
        self.unk_token = None  # bytes encode any text

    def encode(self, text: str) -> list[int]:
        return self._enc.encode_ordinary(text)

    def encode_to_numpy(self, text: str) -> np.ndarray:
        """The ids of encode() as a uint32 array, straight from tiktoken's buffer (no Python list)."""
        return self._enc.encode_to_numpy(text, allowed_special=set(), disallowed_special=())

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]:
        return [self.encode_to_numpy(text) for text in texts]

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        return self._enc.decode_bytes([int(i) for i in ids])

    def decode(self, ids: Iterable[int]) -> str:
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def spec(self) -> dict:
        return {"type": "tiktoken", "name": self.name}

    def bpe(self) -> tuple[list[bytes], str, dict[str, int]]:
        """The encoding itself: its tokens' bytes in rank (= id) order, its split pattern, its special tokens."""
        ranks = sorted(self._enc._mergeable_ranks.items(), key=lambda item: item[1])
        if [rank for _, rank in ranks] != list(range(len(ranks))):
            raise ValueError(f"{self.name}: the token ids of this encoding are not 0..n-1")
        return [token for token, _ in ranks], self._enc._pat_str, dict(self._enc._special_tokens)


class BPETokenizer(TiktokenTokenizer):
    """A byte-level BPE of its own: tokens (as bytes) in merge order, a pre-tokenizer split pattern, end-of-text
    after the tokens. Encoding is tiktoken's, so it runs at tiktoken's speed."""

    def __init__(self, name: str, pattern: str, ranks: list[bytes], eot: str = EOT):
        import tiktoken

        if len(ranks) < 256 or len(set(ranks)) != len(ranks):
            raise ValueError(f"{name}: a byte-level BPE needs its 256 bytes and distinct tokens")
        mergeable = {token: rank for rank, token in enumerate(ranks)}
        self._use(
            name, tiktoken.Encoding(name, pat_str=pattern, mergeable_ranks=mergeable, special_tokens={eot: len(ranks)})
        )
        self.pattern, self.ranks, self.eot = pattern, list(ranks), eot

    def spec(self) -> dict:
        ranks = [base64.b64encode(token).decode("ascii") for token in self.ranks]
        return {"type": "bpe", "name": self.name, "pattern": self.pattern, "ranks": ranks, "eot": self.eot}


class CharTokenizer:
    """One token per character, with optional end-of-text and unknown-character tokens after the characters."""

    def __init__(self, chars: list[str], eot: str | None = None, unk: str | None = None):
        if len(set(chars)) != len(chars) or any(len(c) != 1 for c in chars):
            raise ValueError("a char vocabulary must list distinct single characters")
        self.chars = list(chars)
        self.itos = [*self.chars, *(t for t in (eot, unk) if t)]
        self.stoi = {c: i for i, c in enumerate(self.chars)}
        self.eot, self.unk = eot, unk
        self.eot_token = self.itos.index(eot) if eot else None
        self.unk_token = self.itos.index(unk) if unk else None
        self.n_vocab = len(self.itos)
        self.name = "char"
        self._table: np.ndarray | None = None  # code point -> id, built on the first encode_to_numpy

    @classmethod
    def build(
        cls, texts: Iterable[str], min_count: int = 1, eot: str | None = None, unk: str | None = None
    ) -> CharTokenizer:
        """Vocabulary of the characters seen at least min_count times, in code point order."""
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(text)
        return cls(sorted(c for c, n in counts.items() if n >= min_count), eot=eot, unk=unk)

    def encode(self, text: str) -> list[int]:
        stoi, unk = self.stoi, self.unk_token
        try:
            return [stoi[c] for c in text]
        except KeyError as e:
            if unk is None:
                raise ValueError(f"character {e.args[0]!r} is not in the vocabulary (it has no unk token)") from e
            return [stoi.get(c, unk) for c in text]

    def encode_to_numpy(self, text: str) -> np.ndarray:
        """The ids of encode() as an array, by one table lookup over the text's code points."""
        if self._table is None:
            unknown = -1 if self.unk_token is None else self.unk_token
            self._table = np.full(sys.maxunicode + 1, unknown, dtype=np.int32)
            self._table[[ord(c) for c in self.chars]] = np.arange(len(self.chars), dtype=np.int32)
        ids = self._table[np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)]
        if self.unk_token is None and (ids < 0).any():
            self.encode(text)  # raises, naming the character
        return ids

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]:
        return [self.encode_to_numpy(text) for text in texts]

    def decode(self, ids: Iterable[int]) -> str:
        itos = self.itos
        return "".join(itos[i] if 0 <= i < len(itos) else "\ufffd" for i in map(int, ids))

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        return self.decode(ids).encode("utf-8")

    def spec(self) -> dict:
        return {"type": "char", "chars": self.chars, "eot": self.eot, "unk": self.unk}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.spec(), ensure_ascii=False), encoding="utf-8")


class HFTokenizer:
    """A Hugging Face tokenizer (the tokenizer.json an open model ships), encoding with the `tokenizers` library in
    batches; special tokens in the text are encoded as plain text, as with every tokenizer here. `config` is its
    tokenizer_config.json (the chat template among it), kept so that an exported model carries it unchanged."""

    def __init__(self, name: str, definition: dict, eot: str, config: dict | None = None):
        from tokenizers import Tokenizer as Fast

        self._fast = Fast.from_str(json.dumps(definition))
        self._fast.encode_special_tokens = True
        self.name, self.definition, self.eot, self.config = name, definition, eot, dict(config or {})
        vocab = self._fast.get_vocab(with_added_tokens=True)
        self.n_vocab = max(vocab.values()) + 1
        if eot not in vocab:
            raise ValueError(f"{name}: end-of-text token {eot!r} is not in its vocabulary")
        self.eot_token = vocab[eot]
        self.unk_token = None
        self._specials = {t["id"]: t["content"].encode("utf-8") for t in definition.get("added_tokens", [])}
        self._byte_level = (definition.get("decoder") or {}).get("type") == "ByteLevel"
        self._bytes: dict[int, bytes] = {}

    def encode(self, text: str) -> list[int]:
        return self._fast.encode(text, add_special_tokens=False).ids

    def token_id(self, token: str) -> int | None:
        """The id of a token of the vocabulary (a special one, such as <|im_end|>), None when it has no such token."""
        return self._fast.token_to_id(token)

    def encode_to_numpy(self, text: str) -> np.ndarray:
        return np.asarray(self.encode(text), dtype=np.uint32)

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]:
        found = self._fast.encode_batch_fast(texts, add_special_tokens=False)
        return [np.asarray(encoding.ids, dtype=np.uint32) for encoding in found]

    def _token_bytes(self, i: int) -> bytes:
        if (known := self._bytes.get(i)) is None:
            token = self._fast.id_to_token(i)
            if i in self._specials or token is None:
                known = self._specials.get(i, "\ufffd".encode())
            else:
                known = bytes(_UNICODE_TO_BYTE.get(c, 0) for c in token)
            self._bytes[i] = known
        return known

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        if not self._byte_level:
            return self.decode(ids).encode("utf-8")
        return b"".join(self._token_bytes(int(i)) for i in ids)

    def decode(self, ids: Iterable[int]) -> str:
        if self._byte_level:
            return self.decode_bytes(ids).decode("utf-8", errors="replace")
        return self._fast.decode([int(i) for i in ids], skip_special_tokens=False)

    def spec(self) -> dict:
        return {"type": "hf", "name": self.name, "eot": self.eot, "tokenizer": self.definition, "config": self.config}


def byte_level_alphabet() -> dict[int, str]:
    """Byte-level BPE's printable stand-in for each byte (the mapping GPT-2's and Qwen's tokenizer.json files use)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    return {**{b: chr(b) for b in printable}, **{b: chr(256 + i) for i, b in enumerate(others)}}


_UNICODE_TO_BYTE = {shown: byte for byte, shown in byte_level_alphabet().items()}


def hf_tokenizer_file(path: Path, definition: dict) -> HFTokenizer:
    """A Hugging Face tokenizer.json (its folder's tokenizer_config.json beside it, when there is one), named by its
    content (hf-<sha256 prefix>: the same tokenizer from a hub cache, a folder or a registered model is one
    tokenizer). Its documents end with <|endoftext|> when the vocabulary has it, else with the config's eos_token."""
    config_file = path.parent / "tokenizer_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {}
    added = {t["content"] for t in definition.get("added_tokens", [])}
    eos = config.get("eos_token")
    eos = eos.get("content") if isinstance(eos, dict) else eos
    eot = EOT if EOT in added or EOT in definition.get("model", {}).get("vocab", {}) else eos
    if not eot:
        raise ValueError(f"{path}: no {EOT} token and no eos_token in tokenizer_config.json to end documents with")
    digest = hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()[:12]
    return HFTokenizer(f"hf-{digest}", definition, eot, config)


def tokenizer_from_spec(spec: dict) -> Tokenizer:
    """Build the tokenizer a dataset or checkpoint describes."""
    kind = spec.get("type")
    if kind == "tiktoken":
        return TiktokenTokenizer(spec["name"])
    if kind == "char":
        return CharTokenizer(spec["chars"], eot=spec.get("eot"), unk=spec.get("unk"))
    if kind == "bpe":
        ranks = [base64.b64decode(token) for token in spec["ranks"]]
        return BPETokenizer(spec["name"], spec["pattern"], ranks, spec.get("eot", EOT))
    if kind == "hf":
        return HFTokenizer(spec["name"], spec["tokenizer"], spec["eot"], spec.get("config"))
    raise ValueError(f"unknown tokenizer type {kind!r}; expected 'tiktoken', 'bpe', 'char' or 'hf'")


class TokenizerFileError(FixableError, ValueError):
    """A tokenizer.json that cannot be read as a tokenizer; the message names the file."""


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Read a tokenizer spec saved as JSON (tokenizer.json in a dataset or checkpoint folder), or a Hugging Face
    tokenizer.json (an open model's folder)."""
    try:
        spec = json.loads(Path(path).read_text(encoding="utf-8"))
        if isinstance(spec, dict) and "type" not in spec and "model" in spec:
            return hf_tokenizer_file(Path(path), spec)
        return tokenizer_from_spec(spec)
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as e:  # not UTF-8, not JSON, not a spec
        raise TokenizerFileError(
            f"{path} is not a gptflow tokenizer file ({type(e).__name__}: {str(e).splitlines()[0][:200]}); build "
            "the dataset again, or point at the tokenizer.json of a dataset or checkpoint"
        ) from e


class StreamDecoder:
    """Turns tokens into text as they arrive, holding back the bytes of a character cut between tokens."""

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, ids: Iterable[int]) -> str:
        return self._utf8.decode(self.tokenizer.decode_bytes(ids))

    def flush(self) -> str:
        return self._utf8.decode(b"", final=True)
