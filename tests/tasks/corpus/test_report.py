from tasks.corpus.stage1_raw import RawFiles
from tasks.corpus.stage7_report import build_report
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
