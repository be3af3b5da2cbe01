from gpt.mixture import MixtureConfig
from tasks.corpus.stage1_raw import RawFiles
from tasks.corpus.stage7_report import build_report, mixture_markdown
from tasks.stage import StageResult


def stage(name: str, rows: int, **extra) -> StageResult:
    return StageResult(name, f"x/{name}", f"/data/x/{name}", "fp", {"rows": rows}, False, 0.1, extra)


def test_the_report_shows_duplicates_by_corpus_pair():
    corpora = [stage("poetry-tang", 57_607), stage("poetry-tang300", 320)]
    deduped = stage(
        "poetry",
        54_900,
        per_corpus={"poetry-tang": {"rows": 54_891, "dropped_near_duplicate": 1_702}, "poetry-tang300": {"rows": 9}},
        duplicate_pairs={"poetry-tang300": {"poetry-tang": 311}, "poetry-tang": {"poetry-tang": 2_716}},
    )
    stats = {"corpora": {}, "doc_tokens_histogram": {}}
    raw = [RawFiles(c.name, [], [], []) for c in corpora]
    report = build_report("poetry", raw, corpora, corpora, deduped, stage("tokens", 0, stats=stats))
    assert "| poetry-tang300 | poetry-tang | 311 |" in report
    assert "| poetry-tang | poetry-tang | 2,716 |" in report
    assert "| poetry-tang | dedupe | near_duplicate | 1,702 |" in report


def test_the_report_shows_each_corpus_share_of_training_and_its_passes():
    stats = {"corpora": {"news": {"train_tokens": 9_000}, "poems": {"train_tokens": 1_000}}}
    by_size = mixture_markdown(stats, MixtureConfig())
    assert "| news | 9,000 | 90.0% | 1.00 |" in by_size and "| poems | 1,000 | 10.0% | 1.00 |" in by_size
    chosen = mixture_markdown(stats, MixtureConfig(shares={"poems": 0.5}))
    assert "| news | 9,000 | 50.0% | 0.56 |" in chosen and "| poems | 1,000 | 50.0% | 5.00 |" in chosen
    assert "cannot be followed" in mixture_markdown(stats, MixtureConfig(shares={"wiki": 0.5}))
