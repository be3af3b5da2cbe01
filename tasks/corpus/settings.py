"""The settings of the build-corpus stages, the keys of pipelines.yaml they own, checked without running anything:
loading pipelines.yaml imports this module and none of the stages (nor DuckDB, numba, MLflow or torch).

    SourceConfig(url="https://x.org/tang.{0..57000..1000}.json")   # corpora.<name>.sources[i]     (stage 1, raw)
    rules_for("qa", {"min_chars": 10})                              # datasets.<name>.filter        (stage 3, filter)
    check_where_words("star >= 3", ["star"], "corpora.web.where")   # corpora.<name>.where          (stage 3, filter)
    DedupeConfig(near_search=NearConfig(threshold=0.7))             # datasets.<name>.dedupe        (stage 4, dedupe)
    TokenizeConfig(tokenizer="bpe", vocab_size=32_000)              # datasets.<name>.tokenize      (stages 5 and 6)

A `where` filter is checked here word by word: every name a column of the corpus or an allowed function, every
character of an expression, parentheses that match, no statement or subquery. The build parses it with DuckDB's own
parser before its first stage runs (text/where.py, which also decides what the filter runs), so what this check lets
through is never run unparsed.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import unquote, urlparse

from gpt.config import ConfigError, from_dict

_SHA256 = re.compile(r"[0-9a-f]{64}")
_RANGE = re.compile(r"\{(\d+)\.\.(\d+)(?:\.\.(\d+))?\}")


@dataclass
class SourceConfig:
    url: str = ""
    """http(s) URL to download (resumed, retried, cached by content; the mirror folder is searched first). A range
    `{first..last}` or `{first..last..step}` in it stands for one file per number (`tang.{0..57000..1000}.json`)."""
    path: str = ""
    """A local file, folder or archive (zip, tar, .gz, .bz2); `~` works, relative paths start at pipelines.yaml."""
    sha256: str = ""
    """Expected sha256 of the downloaded or local file; a mismatch stops the build."""
    members: list[str] = field(default_factory=list)
    """Files to read inside a folder or archive, as glob patterns (`wiki_zh/*/wiki_*`); each must match at least
    one file. Empty: every file."""
    mirror_name: str = ""
    """Where this file sits under the mirror folder, when that is not the URL's last path parts; ending in `/`, the
    folder that holds it under its own file name."""

    def __post_init__(self):
        if bool(self.url) == bool(self.path):
            raise ConfigError("a source needs exactly one of 'url' or 'path'")
        if self.url and not self.url.startswith(("http://", "https://")):
            raise ConfigError(f"url must start with http:// or https://, got {self.url!r}")
        if self.sha256 and not _SHA256.fullmatch(self.sha256):
            raise ConfigError(f"sha256 must be 64 lower-case hex digits, got {self.sha256!r}")
        if (found := _RANGE.search(self.url)) is not None:
            if self.sha256:
                raise ConfigError(f"{self.url}: a range stands for several files; one sha256 cannot pin them")
            first, last, step = int(found[1]), int(found[2]), int(found[3] or 1)
            if step < 1 or first > last:
                raise ConfigError(f"{self.url}: the range {found[0]} names no file; write {{first..last..step}}")

    def expand(self) -> list[SourceConfig]:
        """One source per file: the url's ranges spelled out (in order), the mirror folder joined to the file name."""
        found = _RANGE.search(self.url)
        if found is None:
            name = unquote(urlparse(self.url).path.rsplit("/", 1)[-1]) if self.url else ""
            folder = self.mirror_name.endswith("/")
            return [dataclasses.replace(self, mirror_name=self.mirror_name + name)] if folder and name else [self]
        first, last, step = int(found[1]), int(found[2]), int(found[3] or 1)
        spelled = [self.url[: found.start()] + str(n) + self.url[found.end() :] for n in range(first, last + 1, step)]
        return [s for url in spelled for s in dataclasses.replace(self, url=url).expand()]

    @property
    def label(self) -> str:
        return self.url or self.path


@dataclass(frozen=True)
class NearConfig:
    threshold: float = 0.7
    """Jaccard similarity of two documents' shingle sets at or above which the later one is a near duplicate."""
    ngram: int = 2
    """Units per shingle: characters in Chinese, words in English (text/sketch.py)."""
    num_perm: int = 120
    """MinHash functions per document, cut into `bands` LSH bands."""
    bands: int = 24
    """LSH bands of num_perm / bands values; a pair of similarity s becomes a candidate with probability
    1 - (1 - s^rows)^bands (with 120 / 24: 0.99 at 0.7, 0.95 at 0.65, 0.86 at 0.6, 0.07 at 0.3)."""
    sketch_size: int = 256
    """Smallest shingle hashes kept per document to verify candidates (exact for documents up to this many)."""
    bucket_peers: int = 8
    """Each document sharing a band key or an anchor is compared with at most this many of the earliest documents
    sharing it."""
    containment: float = 0.8
    """A document at least this share of whose shingles a longer kept document holds is a duplicate of it (a part
    of it, an abridged copy, a repost with its own first lines); 0: off."""
    containment_min_shingles: int = 8
    """Fewest distinct shingles of a document dropped as contained (a short line inside a long text is a quote, not
    a copy)."""
    anchor_ngram: int = 5
    """Units per anchor, the longer shingles that find a document inside a longer one (text/sketch.py)."""
    anchors: int = 32
    """Anchors sampled per document (up to twice as many): more find smaller parts, for more candidate pairs."""
    anchors_shared: int = 2
    """Anchors two documents must share to be compared for containment (besides half of `containment` of the
    shorter one's anchors that the longer one can share)."""
    seed: int = 1
    """Seeds the hash functions, so that the result is reproducible."""

    def __post_init__(self):
        for key in (
            "ngram",
            "num_perm",
            "bands",
            "sketch_size",
            "bucket_peers",
            "anchor_ngram",
            "anchors",
            "anchors_shared",
        ):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be at least 1, got {getattr(self, key)}")
        if self.num_perm % self.bands:
            raise ConfigError(f"num_perm ({self.num_perm}) must be a multiple of bands ({self.bands})")
        if not 0 < self.threshold <= 1:
            raise ConfigError(f"threshold must be in (0, 1], got {self.threshold}")
        if not 0 <= self.containment <= 1:
            raise ConfigError(f"containment must be in [0, 1] (0: off), got {self.containment}")


@dataclass
class DedupeConfig:
    """Deduplication across all corpora of a dataset."""

    exact: bool = True
    """Drop documents equal after folding width, case, variant characters, punctuation and whitespace."""
    near: bool = True
    """Drop near duplicates: documents whose shingle sets are at least `near_search.threshold` similar, and
    documents mostly contained in a longer one (`near_search.containment`)."""
    near_search: NearConfig = field(default_factory=NearConfig)
    """Shingles, LSH and the similarity threshold of the near-duplicate search (docs/corpus.md: tuning)."""


@dataclass(frozen=True)
class TokenizeConfig:
    tokenizer: Literal["gpt2", "cl100k_base", "o200k_base", "char", "bpe", "hf"] = "gpt2"
    """gpt2 (needed to start from OpenAI's weights), cl100k_base or o200k_base (uint32 shards), char (a
    vocabulary of the dataset's characters, saved with it), bpe (a byte-level BPE trained on the dataset's train
    documents by the bpe stage, saved with it) or hf (an open model's own tokenizer: `hf_tokenizer`)."""
    hf_tokenizer: str = ""
    """For hf: the Hugging Face tokenizer to encode with, as the model to continue expects: a hub id
    (Qwen/Qwen3-0.6B-Base; HF_HUB_OFFLINE=1 reads the local hub cache only), a model folder holding tokenizer.json,
    or a registered model (models:/NAME@ALIAS). Documents end with its <|endoftext|>."""
    reuse_tokenizer: str = ""
    """Encode with an existing tokenizer instead, so that new data is encoded as an existing model expects: a
    registered model or run (models:/NAME@ALIAS, models:/NAME/VERSION, a run id), a token dataset or checkpoint
    folder, or its tokenizer.json. `tokenizer` then only names the folder."""
    vocab_size: int = 32_000
    """For bpe: tokens in the vocabulary, end-of-text included."""
    bpe_train_chars: int = 20_000_000
    """For bpe: characters of train documents to learn from (a uniform sample of them when there are more)."""
    val_fraction: float = 0.005
    """Share of the documents that go to val (by content hash)."""
    min_val_docs: int = 100
    """Fewest documents in val (the fraction is raised to reach it; at most a tenth of the documents, at least one)."""
    shard_tokens: int = 100_000_000
    """Tokens per shard file (the last one of a split holds the rest)."""
    char_min_count: int = 1
    """For char: a character seen fewer times becomes the unknown-character token."""
    split_seed: int = 0
    """Salts the content hash that picks val; change it for another split of the same data."""

    def __post_init__(self):
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"val_fraction must be between 0 and 1, got {self.val_fraction}")
        for key in ("min_val_docs", "shard_tokens", "char_min_count", "bpe_train_chars"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be at least 1, got {getattr(self, key)}")
        if (self.tokenizer == "hf") != bool(self.hf_tokenizer):
            raise ConfigError("tokenizer: hf and hf_tokenizer go together: hf_tokenizer names the tokenizer to use")
        if self.vocab_size < 257:
            raise ConfigError(f"vocab_size must be at least 257 (256 bytes and end-of-text), got {self.vocab_size}")


TASK_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")


@dataclass(frozen=True)
class ConversationConfig:
    """One conversation made of each document of a corpus (`datasets.<name>.conversations.<corpus>[i]`): the user's
    turn and the assistant's reply, each a template of the document's text, title and meta fields (the syntax of
    a corpus' `template`: `{title}\\n{desc}`; a line whose fields are all empty is left out)."""

    task: str = ""
    """The task's name (poem, qa, headline, en-zh, ...): held-out conversations are scored per task."""
    user: str = ""
    """What the user says."""
    assistant: str = ""
    """What the assistant answers: the tokens the model is trained on."""
    system: str = ""
    """An optional system message opening the conversation (a template too)."""
    best_of: str = ""
    """A meta field (webtext2019zh's qid): of the documents sharing its value, only the one with the largest
    `rank_by` makes a conversation (the best answer of each question)."""
    rank_by: str = ""
    """A numeric meta field (webtext2019zh's star) that ranks the documents of one `best_of` value."""

    def __post_init__(self):
        if not TASK_NAME.fullmatch(self.task):
            raise ConfigError(f"task must be a short lower-case name (letters, digits, - and _), got {self.task!r}")
        if not self.user.strip() or not self.assistant.strip():
            raise ConfigError("a conversation needs a user and an assistant template")
        if bool(self.best_of) != bool(self.rank_by):
            raise ConfigError("best_of and rank_by go together: rank_by orders the documents of one best_of value")

    @property
    def templates(self) -> dict[str, str]:
        """The role of each turn and its template, in order."""
        turns = {"system": self.system, "user": self.user, "assistant": self.assistant}
        return {role: spec for role, spec in turns.items() if spec}


KINDS = ("qa", "article", "sentence", "poem", "english")

SPAM_PHRASES = [
    "点击查看",
    "点击下载",
    "扫描二维码",
    "扫码关注",
    "关注公众号",
    "微信公众号",
    "加微信",
    "加我微信",
    "QQ群",
    "联系电话",
    "免费领取",
    "限时优惠",
    "代理加盟",
    "转载请注明",
    "版权所有",
    "未经授权",
]


@dataclass(frozen=True)
class QualityRules:
    """Thresholds of the quality rules; each kind of text starts from its own defaults (KIND_DEFAULTS)."""

    min_chars: int = 100
    """Fewest characters a document may have after tidying."""
    max_chars: int = 200_000
    """Most characters a document may have (0: no limit)."""
    min_cjk_share: float = 0.3
    """Least share of CJK ideographs among a document's characters (0: no check, for English text)."""
    max_repeated_line_share: float = 0.3
    """Most share of non-empty lines that repeat an earlier line of the same document (1: no check)."""
    max_repeated_ngram_share: float = 0.3
    """Most share of a document's character n-grams that occur in it more than once (1: no check)."""
    ngram: int = 10
    """Characters per n-gram of the repetition rule."""
    spam_phrases: list[str] = field(default_factory=lambda: list(SPAM_PHRASES))
    """Advertising and boilerplate phrases."""
    max_spam_hits: int = 2
    """Most spam phrase occurrences a document may hold."""
    max_control_chars: int = 5
    """Most control characters (besides tab and line breaks) and U+FFFD a raw document may hold."""
    strip_markup: bool = True
    """Turn `<br>`/`<p>` into line breaks and drop other HTML tags and entities."""
    to_simplified: bool = False
    """Convert traditional characters to simplified ones with OpenCC (t2s)."""

    def __post_init__(self):
        for key in ("min_cjk_share", "max_repeated_line_share", "max_repeated_ngram_share"):
            if not 0 <= getattr(self, key) <= 1:
                raise ConfigError(f"{key} must be between 0 and 1, got {getattr(self, key)}")
        if self.ngram < 2:
            raise ConfigError(f"ngram must be at least 2, got {self.ngram}")


KIND_DEFAULTS: dict[str, dict] = {
    "qa": {"min_chars": 10, "max_chars": 20_000, "max_spam_hits": 1},
    "article": {},
    "poem": {"min_chars": 8, "max_chars": 20_000, "max_repeated_line_share": 1.0, "max_repeated_ngram_share": 1.0},
    "sentence": {"min_chars": 4, "max_chars": 2_000, "max_repeated_line_share": 1.0, "max_repeated_ngram_share": 1.0},
    "english": {
        "min_chars": 20,
        "max_chars": 0,
        "min_cjk_share": 0.0,
        "max_repeated_line_share": 1.0,
        "max_repeated_ngram_share": 1.0,
        "spam_phrases": [],
    },
}


def rules_for(kind: str, *overrides: dict, where: str = "filter") -> QualityRules:
    """The rules of a kind of text, with override mappings applied in order (later wins)."""
    if kind not in KIND_DEFAULTS:
        raise ConfigError(f"{where}: unknown kind {kind!r}; allowed: {', '.join(KINDS)}")
    merged = dict(KIND_DEFAULTS[kind])
    for extra in overrides:
        merged.update(extra)
    return from_dict(QualityRules, merged, f"{where}.")


FUNCTIONS = frozenset(
    {
        # operators: arithmetic, concatenation, LIKE / NOT LIKE / ILIKE / NOT ILIKE / GLOB
        *("+", "-", "*", "/", "//", "%", "^", "**", "||", "~~", "!~~", "~~*", "!~~*", "~~~", "!~~~"),
        # text
        *("length", "len", "strlen", "char_length", "character_length", "length_grapheme", "lower", "upper"),
        *("lcase", "ucase", "trim", "ltrim", "rtrim", "contains", "starts_with", "ends_with", "prefix", "suffix"),
        *("strpos", "instr", "position", "substr", "substring", "left", "right", "replace", "concat", "concat_ws"),
        *("reverse", "split_part", "regexp_matches", "regexp_full_match", "regexp_extract", "regexp_replace"),
        *("like_escape", "ilike_escape", "levenshtein", "unicode", "ord", "ascii", "md5", "hash"),
        # numbers, NULLs, lists of constants, JSON fields
        *("abs", "round", "floor", "ceil", "ceiling", "sign", "greatest", "least", "nullif", "ifnull"),
        *("list_value", "list_contains", "json_extract_string", "json_extract", "json_exists", "json_valid"),
    }
)
"""Scalar functions a `where` may call: pure functions of their arguments (none reads a file, the environment or
the database, and none can build a value larger than its inputs many times over, as `repeat` could)."""
DOCUMENT_COLUMNS = ("doc_id", "corpus", "text", "title", "source_file", "source_line", "meta", "chars")
"""The columns every corpus has in the filter stage (the ingest schema, and `chars`), besides its format's meta."""
KEYWORDS = frozenset(
    {"and", "or", "not", "in", "between", "is", "null", "like", "ilike", "glob", "escape", "case", "when", "then"}
    | {"else", "end", "cast", "try_cast", "as", "true", "false", "coalesce", "similar", "to"}
)
"""Words of an expression that are not columns (coalesce: DuckDB parses it as an operator, not a function)."""
STATEMENT_WORDS = frozenset(
    {"select", "from", "where", "union", "except", "intersect", "with", "values", "table", "insert", "update"}
    | {"delete", "copy", "attach", "detach", "install", "load", "pragma", "set", "reset", "call", "create", "drop"}
    | {"alter", "export", "import", "checkpoint", "vacuum", "use"}
)
"""Words that start a statement or a query, never part of a condition."""
_WORD = re.compile(
    r"""\s+|--[^\n]*|/\*.*?\*/"""  # spaces and comments
    r"""|(?P<string>'(?:[^']|'')*')|"(?P<quoted>(?:[^"]|"")+)"|(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"""
    r"|(?P<name>[^\W\d]\w*)|(?P<cast>::)|(?P<paren>[()])"
    r"|(?P<op>!?~~[~*]?|<>|!=|<=|>=|==|\*\*|//|\|\||[-+*/%^=<>,\[\]])",
    re.DOTALL,
)
"""The words of an expression: constants, quoted and plain names, casts, parentheses and operators."""


def check_where_words(where: str, meta_keys: list[str], key_path: str) -> None:
    """A ConfigError naming `key_path` unless `where` is made only of the corpus' columns, allowed functions,
    constants, operators and expression keywords, with matching parentheses."""
    columns = [*DOCUMENT_COLUMNS, *meta_keys]

    def refuse(why: str) -> ConfigError:
        return ConfigError(
            f"{key_path}: not a valid filter: {why}. A filter is one condition over the corpus' columns "
            f"({', '.join(columns)}), e.g. star >= 3 AND topic <> '广告'"
        )

    depth, position, after_type_marker = 0, 0, False
    while position < len(where):
        found = _WORD.match(where, position)
        if found is None:
            char = where[position]
            raise refuse("it holds a statement, not only an expression" if char == ";" else f"{char!r} is not allowed")
        position, kind = found.end(), found.lastgroup
        if kind is None:  # spaces and comments
            continue
        following = where[position:].lstrip()[:1]
        if kind == "paren":
            depth += 1 if found[0] == "(" else -1
            if depth < 0:
                raise refuse("its parentheses do not match")
        elif kind in ("name", "quoted"):
            word = found[kind].replace('""', '"')
            lower = word.lower() if kind == "name" else word
            if kind == "name" and lower in STATEMENT_WORDS:
                raise refuse("a subquery is not allowed" if lower == "select" else f"{word} starts a statement")
            known = lower in KEYWORDS or lower in columns or after_type_marker
            if following == "(" and lower not in KEYWORDS and not after_type_marker and lower not in FUNCTIONS:
                raise refuse(f"the function {word}() is not allowed")
            if following != "(" and not known:
                raise refuse(f"{word} is not a column of the corpus")
        after_type_marker = kind == "cast" or (kind == "name" and found[kind].lower() == "as")
    if depth:
        raise refuse("its parentheses do not match")
