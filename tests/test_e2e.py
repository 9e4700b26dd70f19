"""End to end through real nbgrader: release, smoke run, autograde, feedback, export, results."""

import csv
import json
import shutil
import time
from pathlib import Path

import nbformat
import psutil
import pytest
from nbclient import NotebookClient

from autograder import course, demo
from autograder.build import build
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
    assert "AssertionError" in results["tests"][1]["output"]


def test_release_has_the_student_view_sources(mini_demo) -> None:
    out, _ = mini_demo
    released = out / "course" / "release" / "mini" / "mini.ipynb"
    assert sources(released) == sources(out / "views" / "student" / "mini.ipynb")


def test_release_smoke_runs(mini_demo) -> None:
    out, _ = mini_demo
    smoke_run(out / "course" / "release" / "mini" / "mini.ipynb")


def write_submission(course_dir: Path, student: str, nb_or_text) -> None:
    target = course_dir / "submitted" / student / "mini" / "mini.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(nb_or_text, str):
        target.write_text(nb_or_text)
    else:
        nbformat.write(nb_or_text, target)


def test_broken_submissions_do_not_stop_the_batch(mini_demo, tmp_path, monkeypatch) -> None:
    out, _ = mini_demo
    course_dir = tmp_path / "course"
    monkeypatch.setattr(course, "CELL_TIMEOUT_S", 20)
    assert build([MINI], tmp_path / "views") == []
    course.release(course_dir, [tmp_path / "views" / "nbgrader" / "mini.ipynb"])
    release = nbformat.read(course_dir / "release" / "mini" / "mini.ipynb", as_version=4)
    solution = nbformat.read(tmp_path / "views" / "solution" / "mini.ipynb", as_version=4)
    warn = "import warnings\n\ndef reparameterize(mu, log_var):\n    warnings.warn('a harmless warning')\n    return mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)"
    kl_warn = "import warnings\n\ndef kl(mu, log_var):\n    warnings.warn('kl warns too', UserWarning)\n    return 0.5 * (mu**2 + log_var.exp() - 1 - log_var).sum(-1)"
    submissions = {
        "a-full": demo.fill(release, solution, {}),
        "b-garbage": "this is not a notebook",
        "c-crash": demo.fill(
            release, solution, {"answer-reparameterize": "import os\nos._exit(1)"}
        ),
        "d-loop": demo.fill(release, solution, {"answer-kl": "while True:\n    pass"}),
        "e-warns": demo.fill(
            release, solution, {"answer-reparameterize": warn, "answer-kl": kl_warn}
        ),
    }
    # Stalls on its first run only, as a kernel that drops a request does: the retry grades it.
    marker = tmp_path / "stalled-once"
    flaky = (
        "import os, time\n"
        f"if not os.path.exists({str(marker)!r}):\n"
        f"    open({str(marker)!r}, 'w').close()\n"
        "    time.sleep(3600)\n\n"
        "def kl(mu, log_var):\n"
        "    return 0.5 * (mu**2 + log_var.exp() - 1 - log_var).sum(-1)"
    )
    submissions["g-flaky"] = demo.fill(release, solution, {"answer-kl": flaky})
    submissions["f-shadow"] = demo.fill(
        release,
        solution,
        {"answer-reparameterize": "def reparameterize(mu, log_var):\n    return mu"},
    )
    for student, nb in submissions.items():
        write_submission(course_dir, student, nb)
    # A fake check library beside the notebook, whose checks pass anything.
    fake = course_dir / "submitted" / "f-shadow" / "mini" / "autograder"
    (fake / "checks").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "checks" / "__init__.py").write_text("")
    (fake / "checks" / "reparam.py").write_text(
        "def check_reparameterization(f): pass\ncheck_reparameterization_gradients = check_reparameterization\n"
    )
    outcomes = course.autograde(course_dir)
    rows = {r["student"]: r for r in demo.grade_table(course_dir)}
    assert set(rows) == set(submissions)
    assert rows["a-full"]["score"] == 5.0 and outcomes[("a-full", "mini")] is None
    assert rows["e-warns"]["score"] == 5.0, "a warning on stderr must not cost points"
    assert rows["b-garbage"]["score"] == 0.0 and rows["b-garbage"]["error"]
    assert rows["c-crash"]["score"] <= 2.0
    assert rows["d-loop"]["score"] == 3.0, "the looping cell times out; the other test still counts"
    assert rows["f-shadow"]["score"] == 2.0, "a submitted copy of the checks must not be imported"
    assert marker.exists() and rows["g-flaky"]["score"] == 5.0, "a stalled run is graded again"


def test_demo_of_the_real_labs(tmp_path: Path, monkeypatch) -> None:
    # Each lab grades in under 3 minutes here: a stalled submission fails this test in 10.
    monkeypatch.setattr(course, "SUBMISSION_TIMEOUT_S", 600)
    labs = sorted((ROOT / "labs").glob("*.md"))
    if not labs:
        pytest.skip("no lab in labs/ yet")
    rows = demo.run_demo(labs, tmp_path, ROOT / "examples")
    by = {(r["lab"], r["student"]): r for r in rows}
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
    shutil.rmtree(tmp_path / "course" / "autograded", ignore_errors=True)


def manual_points(out: Path, lab: str) -> float:
    results = json.loads(
        (out / "course" / "autograded" / "full" / lab / "results.json").read_text()
    )
    return sum(t["max_score"] for t in results["tests"] if t["output"] == "awaiting manual grading")


def test_a_stalled_submission_is_killed_with_its_kernel(tmp_path, monkeypatch) -> None:
    """The submission limit ends a notebook whose cell would outlast it, kernel included."""
    monkeypatch.setattr(course, "CELL_TIMEOUT_S", 600)
    monkeypatch.setattr(course, "SUBMISSION_TIMEOUT_S", 45)
    assert build([MINI], tmp_path / "views") == []
    course_dir = tmp_path / "course"
    course.release(course_dir, [tmp_path / "views" / "nbgrader" / "mini.ipynb"])
    release = nbformat.read(course_dir / "release" / "mini" / "mini.ipynb", as_version=4)
    solution = nbformat.read(tmp_path / "views" / "solution" / "mini.ipynb", as_version=4)
    pid_file = tmp_path / "kernel.pid"
    # The cell starts a child that inherits the kernel's stdout, then sleeps past every limit.
    stall = (
        "import os, subprocess, time\n"
        "child = subprocess.Popen(['sleep', '3600'])\n"
        f"open({str(pid_file)!r}, 'w').write(f'{{os.getpid()}} {{child.pid}}')\n"
        "time.sleep(3600)"
    )
    write_submission(course_dir, "stall", demo.fill(release, solution, {"answer-kl": stall}))
    started = time.monotonic()
    outcomes = course.autograde(course_dir)
    assert time.monotonic() - started < 120
    assert "longer than 45 s" in outcomes[("stall", "mini")]
    for pid in map(int, pid_file.read_text().split()):  # the kernel and its child
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    row = demo.grade_table(course_dir)[0]
    assert row["score"] == 0.0 and "longer than" in row["error"]
