import pytest
import yaml
from helpers import REPO

from gpt.config import ConfigError
from tasks.config import load_pipelines
from tasks.training.presets import training_preset

VALID = {
    "corpora": {
        "webtext": {"format": "webtext2019zh", "sources": [{"path": "web.json"}], "where": "star >= 3"},
        "news": {"format": "thucnews", "sources": [{"url": "https://example.org/THUCNews.zip"}]},
    },
    "datasets": {"zh": {"corpora": ["news", "webtext"], "filter": {"webtext": {"min_chars": 5}}}},
}


def load(tmp_path, data, overrides=None):
    path = tmp_path / "pipelines.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return load_pipelines(path, overrides)


def test_the_shipped_file_is_valid():
    config = load_pipelines(REPO / "pipelines.yaml")
    assert {"wiki2019zh", "news2016zh", "baike2018qa", "webtext2019zh", "translation2019zh", "thucnews"} <= set(
        config.corpora
    )
    assert {"tinyshakespeare", "openwebtext"} <= set(config.corpora)
    assert config.corpora["webtext2019zh"].where == "star >= 3"
    assert config.quality_rules("zh", "webtext2019zh").min_chars == 10  # the qa kind's default
    assert config.quality_rules("zh", "wiki2019zh").to_simplified


def test_overrides_and_paths(tmp_path):
    config = load(tmp_path, VALID, ["--datasets.zh.dedupe.near=false", "--data_root=out"])
    assert config.datasets["zh"].dedupe.near is False and config.work == tmp_path / "out"
    assert config.quality_rules("zh", "webtext").min_chars == 5


def with_change(path: str, value):
    data = yaml.safe_load(yaml.safe_dump(VALID))
    *parents, leaf = path.split(".")
    node = data
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[leaf] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("corpora.news.formats", "x", r"unknown key 'corpora.news.formats' \(did you mean 'corpora.news.format'\?\)"),
        ("corpora.news.format", "csv", r"corpora.news.format must be one of .*'thucnews'"),
        ("corpora.news.sources", "x.zip", r"corpora.news.sources must be a list"),
        ("corpora.news.sources", [{"sha256": "0" * 64}], r"corpora.news.sources\[0\]: a source needs exactly one"),
        ("corpora.webtext.where", "stars > 1", r"corpora.webtext.where: not a valid filter"),
        (
            "datasets.zh.corpora",
            ["news", "wiki"],
            r"datasets.zh.corpora\[1\]: unknown corpus 'wiki'; known: (news, )?webtext",
        ),
        ("datasets.zh.filter", {"wiki": {}}, r"datasets.zh.filter.wiki: not a corpus of this dataset"),
        ("datasets.zh.filter", {"all": {"min_cjk": 1}}, r"unknown key 'datasets.zh.filter.news.min_cjk'"),
        ("datasets.zh.dedupe", {"near_search": {"bands": 7}}, r"datasets.zh.dedupe.near_search: num_perm \(120\)"),
        (
            "corpora.news.sources",
            [{"url": "https://x/{0..9}.json", "sha256": "0" * 64}],
            r"a range stands for several files",
        ),
        ("workers", "many", r"workers must be int"),
    ],
)
def test_invalid_entries_name_the_key(tmp_path, path, value, message):
    with pytest.raises(ConfigError, match=message):
        load(tmp_path, with_change(path, value))


def test_an_unknown_dataset_or_preset_is_one_line_with_the_names_of_the_file(tmp_path):
    config = load(tmp_path, VALID | {"training": {"zh-small": {"dataset": "zh"}}})
    assert config.dataset("zh") is config.datasets["zh"]
    with pytest.raises(ConfigError) as unknown:
        config.dataset("zhh")
    assert str(unknown.value) == "unknown dataset 'zhh' (did you mean 'zh'?); datasets of pipelines.yaml: zh"
    with pytest.raises(ConfigError, match=r"^unknown dataset 'en'; datasets of pipelines.yaml: zh$"):
        config.dataset("en")
    with pytest.raises(ConfigError) as unknown:
        training_preset(config, "nope")
    assert str(unknown.value) == "unknown training preset 'nope'; training presets of pipelines.yaml: zh-small"
