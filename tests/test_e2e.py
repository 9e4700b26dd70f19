"""End to end through real nbgrader: release, smoke run, autograde, feedback, export, results."""

import csv
import json
import re
import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from autograder import batch, course, demo
from tests import lab_claims
from tests.conftest import ROOT

pytestmark = pytest.mark.slow
MINI = ROOT / "tests" / "templates" / "mini.md"


def sources(path: Path) -> list[str]:
    return [c.source for c in nbformat.read(path, as_version=4).cells]


def smoke_run(path: Path) -> None:
    """Run a released notebook as nbconvert would: cells tagged skip-execution are skipped."""
    nb = nbformat.read(path, as_version=4)
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()


@pytest.fixture(scope="module")
def mini_demo(tmp_path_factory) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("mini")
    return out, demo.run_demo([MINI], out, ROOT / "examples")


def test_mini_demo_grades_full_zero_partial(mini_demo) -> None:
    out, rows = mini_demo
    table = {r["student"]: (r["score"], r["max_score"], r["manual"]) for r in rows}
    # 6 points: reparameterize 3 + kl 2 autograded, the question 1 by hand.
    assert table == {"full": (5.0, 6.0, 1), "untouched": (0.0, 6.0, 0), "partial": (3.0, 6.0, 1)}
    grades = {
        r["student_id"]: float(r["score"])
        for r in csv.DictReader(open(out / "course" / "grades.csv"))
    }
    assert grades == {"full": 5.0, "untouched": 0.0, "partial": 3.0}
    for student in table:
        assert (out / "course" / "feedback" / student / "mini" / "mini.html").is_file()


def test_results_json_has_gradescope_shape(mini_demo) -> None:
    out, _ = mini_demo
    results = json.loads(
        (out / "course" / "autograded" / "partial" / "mini" / "results.json").read_text()
    )
    assert set(results) >= {"score", "tests"}
    assert [(t["name"], t["score"], t["max_score"]) for t in results["tests"]] == [
        ("reparameterize", 3.0, 3.0),
        ("kl", 0.0, 2.0),
        ("why-prior", 0.0, 1.0),
    ]
    assert "passed: check_reparameterization" in results["tests"][0]["output"]
    assert "failed: check_kl_divergence: KL for mu = 2.0" in results["tests"][1]["output"]
    # the hidden check's failure is reported without its inputs or thresholds
    assert results["tests"][1]["output"].endswith(
        "failed: hidden test 1\n"
        "hint: the closed form: 1/2 sum(mu^2 + sigma^2 - 1 - log sigma^2), mean over rows"
    )  # a failed test ends with the lab's own hint for the answer it checks
    assert [t["status"] for t in results["tests"]] == ["passed", "failed", "failed"]
    assert {t["visibility"] for t in results["tests"]} == {"visible"}


def test_release_has_the_student_view_sources(mini_demo) -> None:
    out, _ = mini_demo
    released = out / "course" / "release" / "mini" / "mini.ipynb"
    assert sources(released) == sources(out / "views" / "student" / "mini.ipynb")


def test_release_smoke_runs(mini_demo) -> None:
    out, _ = mini_demo
    smoke_run(out / "course" / "release" / "mini" / "mini.ipynb")


def test_feedback_shows_no_hidden_test(mini_demo) -> None:
    out, _ = mini_demo
    html = (out / "course" / "feedback" / "partial" / "mini" / "mini.html").read_text()
    text = re.sub(r"<[^>]+>", "", html)
    assert "checks.check_kl_divergence(kl)" in text and "failed: check_kl_divergence: KL" in text
    assert "HIDDEN" not in text and "check_kl_divergence_details" not in text


def test_a_graded_notebook_keeps_the_students_figures(mini_demo) -> None:
    """A figure drawn in the sandbox is in the graded notebook, and so in the feedback."""
    out, _ = mini_demo
    nb = nbformat.read(out / "course" / "release" / "mini" / "mini.ipynb", as_version=4)
    plot = "import matplotlib.pyplot as plt\nplt.plot([0, 1], [1, 0])\nplt.show()"
    nb.cells.append(nbformat.v4.new_code_cell(plot))
    folder = out / "course" / "submitted" / "plotter" / "mini"
    folder.mkdir(parents=True)
    nbformat.write(nb, folder / "mini.ipynb")
    try:
        config = course.settings(out / "course", use_sandbox=True)
        result = course.grade_submission(out / "course", "plotter", "mini", config)
    finally:
        shutil.rmtree(folder.parent)
    drawn = result.notebook.cells[-1].outputs
    assert any("image/png" in o.get("data", {}) for o in drawn), drawn


def test_a_timed_out_run_is_graded_once_more(mini_demo, monkeypatch) -> None:
    """A kernel can stall with a request unanswered (ipykernel 1529, 1554): one more run."""
    out, _ = mini_demo
    runs = []
    real = course.job.grade

    def stall_first(*args, **kwargs):
        result = real(*args, **kwargs)
        runs.append(result)
        result.timed_out = len(runs) == 1
        return result

    monkeypatch.setattr(course.job, "grade", stall_first)
    config = course.settings(out / "course", use_sandbox=True)
    result = course.grade_submission(out / "course", "full", "mini", config)
    assert len(runs) == 2 and result is runs[1]


def test_the_compatibility_corpus_releases_and_grades(tmp_path: Path) -> None:
    """Templates in the seed course's style (regions across cells, at every syntactic
    position, slips): nbgrader's release equals each student view cell for cell and id for id,
    it runs, the reference solution earns every autograded point and the release none."""
    corpus = sorted(p for p in (ROOT / "tests" / "compat").glob("*.md") if p.name != "README.md")
    rows = demo.run_demo(corpus, tmp_path, ROOT / "examples")
    by = {(r["lab"], r["student"]): r for r in rows}
    for lab in (p.stem for p in corpus):
        released = tmp_path / "course" / "release" / lab / f"{lab}.ipynb"
        student = tmp_path / "views" / "student" / f"{lab}.ipynb"
        assert sources(released) == sources(student)
        ids = [[c.id for c in nbformat.read(p, as_version=4).cells] for p in (released, student)]
        assert ids[0] == ids[1]
        smoke_run(released)
        full, zero = by[(lab, "full")], by[(lab, "untouched")]
        assert full["score"] == full["max_score"] - manual_points(tmp_path, lab) > 0, lab
        assert zero["score"] == 0.0, lab
        # the feedback page needs no network: no script from a CDN, its maths is MathML
        page = (tmp_path / "course" / "feedback" / "full" / lab / f"{lab}.html").read_text()
        assert not re.search(r"<script[^>]*src=\"https?:", page), lab
    vae = tmp_path / "course" / "feedback" / "full" / "lecture-style-vae" / "lecture-style-vae.html"
    assert vae.read_text().count("<math") >= 10


def test_demo_of_the_real_labs(tmp_path: Path, monkeypatch) -> None:
    # Each lab grades in under 3 minutes here: a stalled submission fails this test in 10.
    monkeypatch.setattr(course, "SUBMISSION_TIMEOUT_S", 600)
    labs = sorted((ROOT / "labs").glob("*.md"))
    if not labs:
        pytest.skip("no lab in labs/ yet")
    rows = demo.run_demo(labs, tmp_path, ROOT / "examples")
    by = {(r["lab"], r["student"]): r for r in rows}
    executed, results = {}, {}
    for lab in (p.stem for p in labs):
        full, zero, part = by[(lab, "full")], by[(lab, "untouched")], by[(lab, "partial")]
        auto = full["max_score"] - manual_points(tmp_path, lab)
        assert full["score"] == auto, (
            f"{lab}: the reference solution must earn every autograded point"
        )
        assert zero["score"] == 0.0, f"{lab}: the untouched release must earn nothing"
        assert 0.0 < part["score"] < full["score"], f"{lab}: the partial submission must earn part"
        released = tmp_path / "course" / "release" / lab / f"{lab}.ipynb"
        assert sources(released) == sources(tmp_path / "views" / "student" / f"{lab}.ipynb")
        smoke_run(released)
        executed[lab] = nbformat.read(
            tmp_path / "course" / "autograded" / "full" / lab / f"{lab}.ipynb", as_version=4
        )
        lab_claims.check(lab, executed[lab])
        graded = tmp_path / "course" / "autograded" / "full" / lab / "results.json"
        results[lab] = json.loads(graded.read_text())
    lab_claims.check_across(executed, results)
    # a few hostile submissions on a real lab (the test lab's corpus is tests/test_hostile.py)
    rebound, stripped = hostile_on(tmp_path, "02-kl-vae")
    assert not any("judged in the kernel" in t.message for t in rebound + stripped)
    shutil.rmtree(tmp_path / "course" / "autograded", ignore_errors=True)


REBIND = """
import dgmlab.checks.core as core
core.Check.__call__ = lambda self, *a, **k: print(f"passed: {self.__name__}")
core.expect = lambda *a, **k: None
"""


def hostile_on(out: Path, lab: str) -> tuple[list, list]:
    """Two hostile submissions of a real lab: the untouched release that rebinds every check
    (must earn 0) and the full solution stripped of all metadata (must earn every point)."""
    course_dir = out / "course"
    release = nbformat.read(course_dir / "release" / lab / f"{lab}.ipynb", as_version=4)
    solution = nbformat.read(out / "views" / "solution" / f"{lab}.ipynb", as_version=4)
    rebind = nbformat.from_dict(json.loads(json.dumps(release)))
    rebind.cells.insert(2, nbformat.v4.new_code_cell(REBIND))
    stripped = demo.fill(release, solution, {})
    for cell in stripped.cells:
        cell.metadata = {}
    config = course.settings(course_dir, use_sandbox=True)
    results = []
    for student, nb in (("hostile-rebind", rebind), ("hostile-stripped", stripped)):
        folder = course_dir / "submitted" / student / lab
        folder.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, folder / f"{lab}.ipynb")
        results.append(course.grade_submission(course_dir, student, lab, config))
    rebound, full = results
    assert sum(t.score or 0 for t in rebound.tests) == 0.0, f"{lab}: rebinding the checks paid"
    manual = json.loads((course_dir / "autograded" / "full" / lab / "results.json").read_text())
    by_hand = {t["name"] for t in manual["tests"] if t["output"] == "awaiting manual grading"}
    tests = [t for t in full.tests if t.grade_id not in by_hand]
    assert [t.score for t in tests] == [t.max_score for t in tests], (
        f"{lab}: a correct notebook without metadata lost points"
    )
    return rebound.tests, full.tests


def manual_points(out: Path, lab: str) -> float:
    results = json.loads(
        (out / "course" / "autograded" / "full" / lab / "results.json").read_text()
    )
    return sum(t["max_score"] for t in results["tests"] if t["output"] == "awaiting manual grading")


def test_grading_refuses_to_run_unsandboxed_unless_asked(mini_demo, tmp_path, monkeypatch) -> None:
    out, _ = mini_demo
    course_dir = tmp_path / "course"
    shutil.copytree(out / "course", course_dir)
    course.write_config(course_dir)  # the copy's own root
    monkeypatch.setattr(course.sandbox, "available", lambda: False)
    with pytest.raises(course.sandbox.SandboxUnavailable, match="--no-sandbox"):
        course.autograde(course_dir)
    course.autograde(course_dir, use_sandbox=False, selection=batch.Selection(force=True))
    rows = {r["student"]: r for r in demo.grade_table(course_dir)}
    assert rows["full"]["score"] == 5.0 and rows["untouched"]["score"] == 0.0
    for student in rows:
        results = json.loads(
            (course_dir / "autograded" / student / "mini" / "results.json").read_text()
        )
        assert results["sandbox"] is False and "WITHOUT the sandbox" in results["output"]
