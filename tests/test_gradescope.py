"""The Gradescope autograder zip: results.json's format, the zip, and its run in Gradescope's
directories laid out in a temporary root (docs/gradescope.md)."""

import contextlib
import copy
import importlib.metadata as metadata
import json
import math
import os
import re
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import nbformat
import psutil
import pytest

from autograder import cli, course, demo, gradescope, job, sandbox, slots
from autograder.build import build
from dgmlab.data import data_dir, mnist_present
from tests.conftest import ROOT

MINI = ROOT / "tests" / "templates" / "mini.md"


def good_entry(name="a", score=2.0, top=2.0, visibility="visible", status="passed") -> dict:
    return {
        "name": name,
        "score": score,
        "max_score": top,
        "status": status,
        "visibility": visibility,
        "output": "passed: check_a",
        "output_format": "text",
        "execution_time": 0.5,
    }


GOOD = {
    "score": 3.0,
    "execution_time": 12.5,
    "output": "graded",
    "output_format": "text",
    "visibility": "visible",
    "stdout_visibility": "hidden",
    "extra_data": {"lab": "mini"},
    "tests": [good_entry(), good_entry("b", 1.0, 3.0, "after_published", "failed")],
}


# ---------------------------------------------------------------- the results.json checker


def test_a_document_as_the_specification_has_it_passes() -> None:
    assert gradescope.validate(GOOD) == []
    assert gradescope.validate({**GOOD, "tests": [], "score": 0}) == []


def changed(path: str, value) -> dict:
    """GOOD with one field set (`tests.0.score`) or removed (value ...)."""
    doc = copy.deepcopy(GOOD)
    *parents, last = path.split(".")
    target = doc
    for key in parents:
        target = target[int(key) if key.isdigit() else key]
    if value is ...:
        del target[int(last) if last.isdigit() else last]
    else:
        target[int(last) if last.isdigit() else last] = value
    return doc


VIS = "one of hidden, after_due_date, after_published, visible"


@pytest.mark.parametrize(
    "doc, problems",
    [
        (["not", "an", "object"], ["results: expected an object, got list"]),
        (changed("stdout_visibility", ...), ['results: missing "stdout_visibility"']),
        (changed("tests.0.status", ...), ['tests[0]: missing "status"']),
        (changed("tests.1.execution_time", ...), ['tests[1]: missing "execution_time"']),
        (
            changed("tests.0.visibility", "public"),
            [f'tests[0].visibility: expected {VIS}, got "public"'],
        ),
        (changed("visibility", None), [f"visibility: expected {VIS}, got null"]),
        (
            changed("tests.0.status", "ok"),
            ['tests[0].status: expected one of passed, failed, got "ok"'],
        ),
        (
            changed("tests.1.output_format", "markdown"),
            [
                'tests[1].output_format: expected one of text, html, simple_format, md, ansi, got "markdown"'
            ],
        ),
        (changed("tests.0.score", True), ["tests[0].score: expected a number >= 0, got true"]),
        (
            changed("tests.0.max_score", "2"),
            ['tests[0].max_score: expected a number >= 0, got "2"'],
        ),
        (changed("execution_time", math.nan), ["execution_time: expected a number >= 0, got NaN"]),
        (
            changed("tests.0.execution_time", -1),
            ["tests[0].execution_time: expected a number >= 0, got -1"],
        ),
        (changed("tests.0.name", " "), ['tests[0].name: expected a non-empty string, got " "']),
        (changed("tests.0.output", ["a"]), ["tests[0].output: expected a string, got list"]),
        (changed("tests.0.points", 2), ['tests[0]: unknown field "points"']),
        (changed("max_score", 3), ['results: unknown field "max_score"']),
        (changed("tests", {}), ["tests: expected a list, got dict"]),
        (changed("tests.1", "b"), ['tests[1]: expected an object, got "b"']),
        (changed("score", 4.0), ["score: expected the sum of the tests' scores, 3, got 4"]),
        (
            changed("tests.1.score", 4.0),
            [
                "tests[1].score: expected at most max_score 3, got 4",
                "score: expected the sum of the tests' scores, 6, got 3",
            ],
        ),
    ],
)
def test_each_departure_from_the_specification_is_named(doc, problems) -> None:
    assert gradescope.validate(doc) == problems


# ---------------------------------------------------------------- results.json of a result

CELLS = [
    gradescope.Graded("plain", 2.0, manual=False, hidden=False),
    gradescope.Graded("mixed", 3.0, manual=False, hidden=True),
    gradescope.Graded("essay", 1.0, manual=True, hidden=False),
]


def test_tests_with_hidden_checks_show_their_points_after_publication() -> None:
    result = job.JobResult(
        None,
        [
            job.TestResult("plain", 2.0, 2.0, "passed: check_a", seconds=1.5),
            job.TestResult(
                "mixed", 0.0, 3.0, "passed: check_b\nfailed: hidden test 1", seconds=2.0
            ),
            job.TestResult("essay", None, 1.0, "awaiting manual grading"),
        ],
        notes=["graded WITHOUT the sandbox (--no-sandbox)"],
        sandboxed=False,
    )
    doc = gradescope.results_document("mini", result, CELLS, 7.25)
    assert gradescope.validate(doc) == []
    shown = [
        (t["name"], t["score"], t["max_score"], t["status"], t["visibility"]) for t in doc["tests"]
    ]
    assert shown == [
        ("plain", 2.0, 2.0, "passed", "visible"),
        ("mixed (public checks)", 0.0, 0.0, "passed", "visible"),
        ("mixed", 0.0, 3.0, "failed", "after_published"),
        ("essay", 0.0, 0.0, "passed", "visible"),
    ]
    public, scored, essay = doc["tests"][1:]
    assert public["output"] == "passed: check_b"  # the hidden check only once published
    assert scored["output"] == "passed: check_b\nfailed: hidden test 1"
    assert essay["output"] == (
        "Graded by hand on Gradescope (1 point), not by the autograder: an answer was given."
    )
    assert [t["execution_time"] for t in doc["tests"]] == [1.5, 2.0, 2.0, 0.0]
    assert doc["score"] == 2.0 and doc["execution_time"] == 7.2
    assert doc["extra_data"]["max_score"] == 5.0 and doc["extra_data"]["sandbox"] is False
    assert doc["output"].splitlines() == [
        "Tests with hidden checks show their points when the grades are published.",
        "1 point of this lab graded by hand on Gradescope, not here.",
        "Isolation: none.",
    ]


@pytest.mark.parametrize("isolation", [gradescope.SANDBOXED, gradescope.UNPRIVILEGED, None])
def test_the_output_says_which_isolation_was_used(isolation) -> None:
    result = job.JobResult(None, [job.TestResult("plain", 2.0, 2.0, "passed: check_a")])
    result.sandboxed = isolation == gradescope.SANDBOXED
    doc = gradescope.results_document("mini", result, CELLS[:1], 1.0, isolation)
    shown = {
        gradescope.SANDBOXED: "sandbox",
        gradescope.UNPRIVILEGED: "unprivileged user, no sandbox",
        None: "none",
    }[isolation]
    assert doc["output"] == f"Isolation: {shown}."
    assert doc["extra_data"]["isolation"] == shown
    assert doc["extra_data"]["sandbox"] is (isolation == gradescope.SANDBOXED)


def test_a_submission_that_cannot_be_graded_scores_zero_and_says_why() -> None:
    release = nbformat.v4.new_notebook(
        cells=[graded_cell("plain", 2), graded_cell("essay", 1, True)]
    )
    result = gradescope.not_graded(release, "no notebook (.ipynb) in the submission")
    doc = gradescope.results_document("mini", result, [CELLS[0], CELLS[2]], 1.0)
    assert gradescope.validate(doc) == []
    assert doc["score"] == 0.0
    assert doc["output"].splitlines()[0] == (
        "The submission could not be graded: no notebook (.ipynb) in the submission"
    )
    assert [(t["name"], t["status"], t["output"]) for t in doc["tests"]] == [
        ("plain", "failed", "no notebook (.ipynb) in the submission"),
        ("essay", "failed", "Graded by hand on Gradescope (1 point), not by the autograder: "
         "no answer to grade."),
    ]  # fmt: skip


def test_the_public_part_keeps_each_public_check_block_whole() -> None:
    message = (
        "failed: check_kl: for mu = 2.0\n  expected 2.0\ngot 4.0\n"
        "passed: hidden test 1\nfailed: hidden test 2\n  (no details)\n"
        "passed: check_shape\njudged in the kernel: no error\nhint: the closed form"
    )
    assert gradescope.public_part(message) == [
        "failed: check_kl: for mu = 2.0",
        "  expected 2.0",
        "got 4.0",
        "passed: check_shape",
        "hint: the closed form",
    ]


def test_hints_show_only_with_a_failed_public_check() -> None:
    """A hint after passed public checks would tell that a hidden check failed."""
    message = "passed: check_kl\nfailed: hidden test 1\nhint: the closed form"
    assert gradescope.public_part(message) == ["passed: check_kl"]


def graded_cell(gid: str, points: float, manual: bool = False, source: str = "checks.a(f)"):
    cell = (nbformat.v4.new_markdown_cell if manual else nbformat.v4.new_code_cell)(source)
    cell.metadata["nbgrader"] = {
        "grade": True,
        "solution": manual,
        "locked": not manual,
        "grade_id": gid,
        "points": points,
    }
    return cell


def test_a_test_is_hidden_where_the_release_lost_hidden_tests() -> None:
    hidden = "checks.a(f)\n### BEGIN HIDDEN TESTS\nchecks.b(f)\n### END HIDDEN TESTS"
    source = nbformat.v4.new_notebook(
        cells=[
            graded_cell("plain", 2),
            graded_cell("mixed", 3, source=hidden),
            graded_cell("essay", 1, True),
        ]
    )
    release = nbformat.v4.new_notebook(
        cells=[graded_cell("plain", 2), graded_cell("mixed", 3), graded_cell("essay", 1, True)]
    )
    assert gradescope.graded_cells(source, release) == CELLS


# ---------------------------------------------------------------- finding the notebook


def submission(tmp_path: Path, *names: str) -> Path:
    folder = tmp_path / "submission"
    folder.mkdir()
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("{}")
    return folder


def test_the_lab_notebook_is_chosen_and_others_named(tmp_path) -> None:
    folder = submission(tmp_path, "scratch.ipynb", "work/mini.ipynb", ".ipynb_checkpoints/x.ipynb")
    chosen, others, why = gradescope.find_notebook(folder, "mini")
    assert (chosen, others, why) == (folder / "work" / "mini.ipynb", ["scratch.ipynb"], None)


def test_a_single_notebook_of_another_name_is_graded(tmp_path) -> None:
    folder = submission(tmp_path, "mini (1).ipynb", "notes.txt")
    assert gradescope.find_notebook(folder, "mini") == (folder / "mini (1).ipynb", [], None)


@pytest.mark.parametrize(
    "names, why",
    [
        (
            ("notes.txt",),
            "no notebook (.ipynb) in the submission (it holds: notes.txt): upload mini.ipynb",
        ),
        ((), "no notebook (.ipynb) in the submission (it holds: nothing): upload mini.ipynb"),
        (
            ("a.ipynb", "b.ipynb"),
            "2 notebooks and none named mini.ipynb in the submission (it holds: a.ipynb, "
            "b.ipynb): upload mini.ipynb",
        ),
    ],
)
def test_no_notebook_to_grade_is_explained(tmp_path, names, why) -> None:
    assert gradescope.find_notebook(submission(tmp_path, *names), "mini") == (None, [], why)


@pytest.mark.parametrize("available", [True, False])
def test_the_sandbox_modes(monkeypatch, available) -> None:
    monkeypatch.setattr(sandbox, "available", lambda: available)
    assert gradescope.sandbox_decision("off") == (False, None)
    assert gradescope.sandbox_decision("auto") == (available, None)
    refusal = (
        "the autograder requires the sandbox (autograder gradescope --sandbox on), but "
        "bubblewrap cannot create namespaces in this container (rebuild the zip with "
        "--sandbox auto or off)"
    )
    assert gradescope.sandbox_decision("on") == ((True, None) if available else (False, refusal))


# ---------------------------------------------------------------- the zip


@pytest.fixture(scope="module")
def built_course(tmp_path_factory) -> Path:
    """A course holding the mini lab's nbgrader view as its source and its release (what the
    zip needs of them; tests that grade release it with nbgrader)."""
    out = tmp_path_factory.mktemp("course")
    assert build([MINI], out / "views") == []
    for kind in ("source", "release"):
        (out / "course" / kind / "mini").mkdir(parents=True)
        shutil.copy(out / "views" / "nbgrader" / "mini.ipynb", out / "course" / kind / "mini")
    return out / "course"


def test_bad_bundles_are_refused_and_write_nothing(built_course, tmp_path, capsys) -> None:
    out = tmp_path / "mini.zip"
    out.write_bytes(b"the previous zip")
    argv = ["gradescope", "lab9", "--course", str(built_course), "--out", str(out)]
    assert cli.main(argv) == 2
    assert capsys.readouterr().err == (
        f"{built_course}/source/lab9/lab9.ipynb: no source of lab 'lab9' (expected a lab released "
        f"with `autograder release --course {built_course}`; released labs: mini)\n"
    )
    cases = [
        ({"time_limit": 2}, "--time-limit 2: expected at least 3 minutes (the assignment's "
         "autograder timeout on Gradescope; its default is 10)"),
        ({"sandbox_mode": "maybe"}, "--sandbox maybe: expected one of off, auto, on"),
        ({"data_root": tmp_path / "nodata"}, f"{tmp_path}/nodata/MNIST/raw: expected the four "
         f"MNIST raw files at their sizes (make data, or python -m dgmlab.data --root "
         f"{tmp_path}/nodata)"),
    ]  # fmt: skip
    for options, message in cases:
        with pytest.raises(gradescope.BundleError) as error:
            gradescope.bundle("mini", built_course, out, **options)
        assert str(error.value) == message
    assert out.read_bytes() == b"the previous zip"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mini.zip"]  # no partial zip left


@pytest.fixture(scope="module")
def mini_zip(built_course, tmp_path_factory) -> Path:
    if not mnist_present(data_dir()):
        pytest.skip("needs the MNIST files (make data)")
    out = tmp_path_factory.mktemp("zip") / "mini.zip"
    argv = ["gradescope", "mini", "--course", str(built_course), "--out", str(out)]
    assert cli.main(argv + ["--sandbox", "auto", "--time-limit", "20"]) == 0
    return out


def wheel_names() -> list[str]:
    """The zip's wheels: the instructor package and the student package it depends on."""
    return [
        f"{dist.replace('-', '_')}-{metadata.version(dist)}-py3-none-any.whl"
        for dist in ("dgm-labs", "dgm-labs-student")
    ]


@pytest.mark.data
def test_the_zip_holds_what_gradescope_runs(mini_zip) -> None:
    with zipfile.ZipFile(mini_zip) as archive:
        names = set(archive.namelist())
        modes = {i.filename: (i.external_attr >> 16) & 0o777 for i in archive.infolist()}
        config = json.loads(archive.read("autograder.json"))
        pins = archive.read("requirements.txt").decode().splitlines()
        setup = archive.read("setup.sh").decode()
    assert names == {
        "setup.sh",
        "run_autograder",
        "autograder.json",
        "requirements.txt",
        *(f"wheels/{name}" for name in wheel_names()),
        "lab/source/mini.ipynb",
        "lab/release/mini.ipynb",
        "data/MNIST/raw/train-images-idx3-ubyte",
        "data/MNIST/raw/train-labels-idx1-ubyte",
        "data/MNIST/raw/t10k-images-idx3-ubyte",
        "data/MNIST/raw/t10k-labels-idx1-ubyte",
    }
    assert modes["setup.sh"] == modes["run_autograder"] == 0o755
    assert config == {
        "lab": "mini",
        "grader": f"dgm-labs {metadata.version('dgm-labs')}",
        "sandbox": "auto",
        "time_limit_min": 20,
        "submission_timeout": 20 * 60 - 90,
        "cell_timeout": 20 * 60 - 90,
        "threads": config["threads"],
        "python": config["python"],
        "autograded_points": 5.0,
        "manual_points": 1.0,
    }
    assert "apt-get install -y -q bubblewrap" in setup  # the sandbox is tried there
    # every requirement pinned as installed here; torch and the grader come another way
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+==[^=\s]+", pin) for pin in pins), pins
    pinned = {pin.split("==")[0].lower() for pin in pins}
    assert {"nbgrader", "nbclient", "ipykernel", "matplotlib"} <= pinned
    assert not pinned & {"torch", "torchvision", "dgm-labs"}
    assert not any(name.startswith("nvidia") for name in pinned)  # CPU wheels need none


@pytest.mark.data
def test_setup_sh_is_bash_that_names_every_requirement(mini_zip, tmp_path) -> None:
    with zipfile.ZipFile(mini_zip) as archive:
        archive.extractall(tmp_path)
        names = set(archive.namelist())
    for script in ("setup.sh", "run_autograder"):
        checked = subprocess.run(["bash", "-n", tmp_path / script], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stderr
    setup = (tmp_path / "setup.sh").read_text()
    installed = re.findall(r'"\$SOURCE/(wheels/[^"\[]+\.whl)(?:\[[a-z,]+\])?"', setup)
    assert installed == [f"wheels/{name}" for name in wheel_names()]
    assert {w for w in names if w.startswith("wheels/")} == set(installed)
    assert '-r "$SOURCE/requirements.txt"' in setup
    for name in ("torch", "torchvision"):
        assert f"{name}=={metadata.version(name).split('+')[0]}" in setup
    assert f"--index-url {gradescope.TORCH_CPU_INDEX} " in setup
    python = json.loads((tmp_path / "autograder.json").read_text())["python"]
    assert f"PYTHON=python{python}\n" in setup


def test_run_autograder_writes_results_when_the_grader_cannot_start(tmp_path) -> None:
    """A Python that does not start (setup.sh failed, say): results.json all the same."""
    zipped = tmp_path / "tiny.zip"
    script = gradescope.render(gradescope.RUN_AUTOGRADER, {"GRADER": "x", "LAB": "mini"})
    gradescope.write_zip(zipped, {"run_autograder": script}, {})
    doc, _ = gradescope.simulate(zipped, tmp_path / "root", {}, python=Path("/bin/false"))
    assert gradescope.validate(doc) == []
    assert doc["score"] == 0 and doc["output"] == (
        "The autograder could not run (exit status 1): the instructor sees why in its log."
    )


def test_a_grader_that_fails_writes_results_that_say_so(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv(gradescope.ROOT_ENV, str(tmp_path))  # no source/: the zip is missing
    assert gradescope.main() == 0
    doc = json.loads((tmp_path / "results" / "results.json").read_text())
    assert gradescope.validate(doc) == []
    assert doc["score"] == 0 and doc["tests"] == []
    assert doc["output"] == (
        "The submission could not be graded: the autograder failed: FileNotFoundError"
    )
    assert "Traceback" in capsys.readouterr().err  # for the instructor's log (stdout hidden)


# ---------------------------------------------------------------- end to end, in the layout


@pytest.fixture(scope="module")
def released(tmp_path_factory) -> tuple[Path, Path]:
    """The mini lab built, released by nbgrader, with the demo's three submissions, and its
    zip (default options)."""
    if not mnist_present(data_dir()):
        pytest.skip("needs the MNIST files (make data)")
    out = tmp_path_factory.mktemp("released")
    assert build([MINI], out / "views") == []
    course_dir = out / "course"
    (release,) = course.release(course_dir, [out / "views" / "nbgrader" / "mini.ipynb"])
    demo.submit(
        course_dir, "mini", release, out / "views" / "solution" / "mini.ipynb", ROOT / "examples"
    )
    return course_dir, gradescope.bundle("mini", course_dir, out / "mini.zip")


@pytest.fixture(scope="module")
def graded(released, tmp_path_factory) -> dict[str, dict]:
    """results.json of the full, partial and untouched submissions, each graded by the
    zip's run_autograder in Gradescope's layout."""
    course_dir, zipped = released
    docs = {}
    for student in ("full", "partial", "untouched"):
        notebook = (course_dir / "submitted" / student / "mini" / "mini.ipynb").read_bytes()
        root = tmp_path_factory.mktemp(student)
        docs[student], log = gradescope.simulate(zipped, root, {"mini.ipynb": notebook})
        assert gradescope.validate(docs[student]) == [], log
    return docs


def points_entries(doc: dict) -> dict[str, dict]:
    """The entries that carry a graded cell's points, by grade id."""
    return {t["name"]: t for t in doc["tests"] if " (public checks)" not in t["name"]}


@pytest.mark.slow
def test_full_partial_and_untouched_are_graded_in_gradescopes_layout(graded) -> None:
    docs = graded
    full, partial, untouched = docs["full"], docs["partial"], docs["untouched"]
    # 6 points: reparameterize 3 + kl 2 autograded, the question 1 by hand on Gradescope
    assert full["score"] == 5.0 == full["extra_data"]["max_score"]
    assert untouched["score"] == 0.0
    assert 0.0 < partial["score"] < 5.0
    for doc in docs.values():
        tests = points_entries(doc)
        assert list(tests) == ["reparameterize", "kl", "why-prior"]
        assert (
            tests["reparameterize"]["visibility"] == tests["kl"]["visibility"] == "after_published"
        )
        assert tests["why-prior"]["max_score"] == 0.0
        assert "Graded by hand on Gradescope (1 point)" in tests["why-prior"]["output"]
        public = [t for t in doc["tests"] if t["name"].endswith(" (public checks)")]
        assert {(t["visibility"], t["max_score"]) for t in public} == {("visible", 0.0)}
        text = json.dumps(doc)  # the hidden checks' code is never shown
        assert "check_kl_divergence_details" not in text and "gradients" not in text
    assert {t["status"] for t in points_entries(full).values()} == {"passed"}
    assert all(t["execution_time"] > 0 for n, t in points_entries(full).items() if n != "why-prior")
    assert points_entries(partial)["kl"]["status"] == "failed"
    assert "failed: check_kl_divergence: KL for mu = 2.0" in points_entries(partial)["kl"]["output"]


@pytest.mark.slow
def test_gradescope_scores_as_autograde_does(released, graded) -> None:
    course_dir, _ = released
    config = course.settings(course_dir, use_sandbox=sandbox.available())
    result = course.grade_submission(course_dir, "partial", "mini", config)
    by_autograde = {t.grade_id: t.score for t in result.tests if t.score is not None}
    assert by_autograde == {"reparameterize": 3.0, "kl": 0.0}
    entries = points_entries(graded["partial"])
    assert {gid: entries[gid]["score"] for gid in by_autograde} == by_autograde


@pytest.mark.slow
@pytest.mark.parametrize(
    "files, why",
    [
        ({"mini.ipynb": b"not json {"}, "not a notebook (NotJSONError)"),
        ({"notes.txt": b"I ran out of time"}, "no notebook (.ipynb) in the submission (it holds: "
         "notes.txt): upload mini.ipynb"),
    ],
)  # fmt: skip
def test_a_broken_or_missing_notebook_scores_zero_with_the_reason(
    released, tmp_path, files, why
) -> None:
    doc, log = gradescope.simulate(released[1], tmp_path / "root", files)
    assert gradescope.validate(doc) == [], log
    assert doc["score"] == 0.0
    assert doc["output"].splitlines()[0] == f"The submission could not be graded: {why}"


@pytest.mark.slow
@pytest.mark.skipif(not sandbox.available(), reason="bubblewrap cannot create namespaces here")
def test_sandbox_on_grades_in_bubblewrap(released, tmp_path) -> None:
    course_dir, _ = released
    zipped = gradescope.bundle("mini", course_dir, tmp_path / "on.zip", sandbox_mode="on")
    notebook = (course_dir / "submitted" / "full" / "mini" / "mini.ipynb").read_bytes()
    files = {"lab/mini.ipynb": notebook, "draft.ipynb": b"{}"}
    doc, log = gradescope.simulate(zipped, tmp_path / "root", files)
    assert gradescope.validate(doc) == [], log
    assert doc["score"] == 5.0 and doc["extra_data"]["sandbox"] is True
    assert "ignored, not part of the lab: draft.ipynb" in doc["output"].splitlines()
    assert doc["output"].splitlines()[-1] == "Isolation: sandbox."
    assert doc["extra_data"]["isolation"] == gradescope.SANDBOXED


# ---------------------------------------------------------------- unsandboxed, as an unprivileged user

TEST_UID = 61_433  # the kernels' users of these tests only (slot k: TEST_UID + k)


def enterable_dir(prefix: str, mode: int = 0o755) -> Path:
    """A new directory that other users may enter: pytest's tmp_path lies in a directory of
    root's that only root may enter, where every read of the kernel's would fail anyway."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(mode)
    return path


def processes_of_test_users() -> list[psutil.Process]:
    return [
        p
        for p in psutil.process_iter(["uids"])
        if p.info["uids"] and TEST_UID <= p.info["uids"].real < TEST_UID + slots.MAX_SLOTS
    ]


@pytest.fixture(scope="module")
def reachable_python() -> Iterator[Path]:
    """A Python the unprivileged kernel may run, with this environment's packages: this
    interpreter where every user may run it; else (a Python under /root, as pyenv's) a venv
    of the system's Python of the same version, where anyone may enter, that sees this
    environment's site-packages, as setup.sh's /autograder/venv on Gradescope."""
    if os.getuid() != 0:
        pytest.skip("needs root: only a root grader starts the kernel as another user")
    if shutil.which("setpriv") is None:
        pytest.skip("needs util-linux's setpriv")
    if sandbox.unprivileged_problem(TEST_UID, []) is None:
        yield Path(sys.executable)
        return
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    system = Path(f"/usr/bin/python{version}")
    if not system.is_file():
        pytest.skip(f"{sys.executable} is out of other users' reach, and {system} is missing")
    top = enterable_dir("reachable-python-")
    try:
        venv = top / "venv"
        subprocess.run([system, "-m", "venv", "--without-pip", venv], check=True)
        site = venv / "lib" / f"python{version}" / "site-packages"
        packages = sysconfig.get_path("purelib")
        (site / "this-environment.pth").write_text(f"import site; site.addsitedir({packages!r})\n")
        problem = sandbox.unprivileged_problem(TEST_UID, [], str(venv / "bin" / "python"))
        if problem is not None:
            pytest.skip(problem)
        yield venv / "bin" / "python"
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_an_unsandboxed_kernel_of_root_runs_as_the_slot_user(tmp_path) -> None:
    if os.getuid() != 0:
        pytest.skip("needs root: only a root grader starts the kernel as another user")
    box = sandbox.Sandbox(tmp_path / "box", tmp_path, tmp_path, enabled=False, uid=TEST_UID)
    assert box.wrap(["python"], {})[:2] == ["env", "-i"]  # drop_privileges off: as root
    dropped = sandbox.Sandbox(
        tmp_path / "dropped", tmp_path, tmp_path, enabled=False, uid=TEST_UID, drop_privileges=True
    )
    dropped.prepare()
    command = dropped.wrap(["python"], {})
    assert command[:8] == [
        "setpriv",
        f"--reuid={TEST_UID}",
        f"--regid={TEST_UID}",
        "--clear-groups",
        "--no-new-privs",
        "--",
        "env",
        "-i",
    ]
    assert command[-1] == "python"
    assert dropped.scratch.stat().st_uid == TEST_UID  # the one place it writes
    assert (dropped.challenge.stat().st_uid, stat.S_IMODE(dropped.challenge.stat().st_mode)) == (
        0,
        0o755,
    )


def test_the_probe_says_what_the_unprivileged_user_cannot_reach(reachable_python) -> None:
    shared = enterable_dir("probe-")
    try:
        (shared / "private").mkdir(mode=0o700)
        python = str(reachable_python)
        assert sandbox.unprivileged_problem(TEST_UID, [shared], python) is None
        assert sandbox.unprivileged_problem(TEST_UID, [shared, shared / "private"], python) == (
            f"user {TEST_UID} cannot run {python} with ipykernel and read {shared}, "
            f"{shared}/private (PermissionError: [Errno 13] Permission denied: "
            f"'{shared}/private'); expected a Python installation and copies that every user "
            "may read"
        )
    finally:
        shutil.rmtree(shared)


def test_the_layout_is_made_root_s_alone_before_the_kernel_starts(tmp_path) -> None:
    if os.getuid() != 0:
        pytest.skip("needs root: the layout is protected only for a root grader")
    root = tmp_path / "autograder"
    for name in ("source/lab/source", "results", "submission"):
        (root / name).mkdir(parents=True)
    (root / "source" / "lab" / "source" / "mini.ipynb").write_text("hidden")
    (root / gradescope.METADATA).write_text("{}")
    for path in (root, root / "source", root / "results", root / gradescope.METADATA):
        path.chmod(0o777)
        os.chown(path, TEST_UID, TEST_UID)
    gradescope.protect_layout(root)
    modes = {
        name: (path.stat().st_uid, stat.S_IMODE(path.stat().st_mode))
        for name, path in [
            ("source", root / "source"),
            ("results", root / "results"),
            ("metadata", root / gradescope.METADATA),
            ("root", root),
        ]
    }
    assert modes == {
        "source": (0, 0o700),
        "results": (0, 0o755),
        "metadata": (0, 0o600),
        "root": (TEST_UID, 0o755),  # still enterable: the venv lives there
    }
    assert (root / "source" / "lab" / "source" / "mini.ipynb").read_text() == "hidden"


def daemon_of(uid: int) -> list[psutil.Process]:
    """The `sleep` of `uid`, once its shell has exec'd it (not a child of this process)."""
    with contextlib.suppress(psutil.Error):
        return [
            p
            for p in processes_of_test_users()
            if p.info["uids"].real == uid and p.name() == "sleep" and p.ppid() != os.getpid()
        ]
    return []


def test_a_slot_ends_with_every_process_of_its_user_killed() -> None:
    """A process of the kernel's that left its session (setsid, double fork) outlives the
    kernel's process group: the slot's end finds it by its user."""
    if os.getuid() != 0:
        pytest.skip("needs root: a slot's processes are told apart by their user only as root")
    if shutil.which("setpriv") is None:
        pytest.skip("needs util-linux's setpriv")
    uid = TEST_UID + slots.MAX_SLOTS - 1  # no slot of a grading run in these tests
    script = "(setsid sleep 300 >/dev/null 2>&1 &)"
    subprocess.run([*sandbox.setpriv(uid), "sh", "-c", script], check=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not daemon_of(uid):
        time.sleep(0.1)
    assert daemon_of(uid), "the daemon did not start"
    slots.clear(uid)
    assert [p for p in processes_of_test_users() if p.info["uids"].real == uid] == []


HOSTILE = """\
import json, os, time

ROOT, REPORT = "@ROOT@", "@REPORT@"


def attempt(action):
    try:
        action()
        return "ok"
    except Exception as exc:
        return type(exc).__name__


def read(path):
    with open(path, "rb") as f:
        return f.read()


def write(path):
    with open(path, "w") as f:
        f.write('{"score": 1000, "tests": []}')


found = {
    "uid": os.getuid(),
    "hidden tests": attempt(lambda: read(f"{ROOT}/source/lab/source/mini.ipynb")),
    "full MNIST": attempt(lambda: read(f"{ROOT}/source/data/MNIST/raw/t10k-images-idx3-ubyte")),
    "results": attempt(lambda: write(f"{ROOT}/results/results.json")),
    "results, a new file": attempt(lambda: write(f"{ROOT}/results/planted.json")),
}


def rewrite_results_later():
    # double fork and setsid: neither the kernel's child nor in its session or group
    if os.fork():
        os.wait()
        return
    try:
        os.setsid()
        if os.fork() == 0:
            started = time.monotonic()
            while time.monotonic() - started < 30:
                line = "alive"
                if time.monotonic() - started >= 5:
                    line = "rewrite: " + attempt(lambda: write(f"{ROOT}/results/results.json"))
                with open(f"{REPORT}/daemon.log", "a") as log:
                    log.write(line + "\\n")
                time.sleep(0.5)
    finally:
        os._exit(0)


rewrite_results_later()
with open(f"{REPORT}/found.json", "w") as out:
    json.dump(found, out)
if any(outcome == "ok" for outcome in found.values()):  # what got through costs points

    def kl(mu, log_var):
        return mu.sum() * 0
"""


@pytest.mark.slow
def test_an_unprivileged_kernel_reads_and_writes_nothing_of_the_graders(
    released, reachable_python, monkeypatch
) -> None:
    """Without the sandbox, as root, in Gradescope's layout: the hidden tests, the full MNIST
    and results/ are out of the kernel's reach, and its daemon dies with the grading."""
    course_dir, zipped = released
    monkeypatch.setenv("AUTOGRADER_SANDBOX_UID", str(TEST_UID))  # read by the grader's process
    root, report = enterable_dir("gradescope-root-"), enterable_dir("hostile-report-", 0o1777)
    try:
        notebook = nbformat.read(course_dir / "submitted" / "full" / "mini" / "mini.ipynb", 4)
        ids = [c.metadata.get("nbgrader", {}).get("grade_id") for c in notebook.cells]
        hostile = HOSTILE.replace("@ROOT@", str(root)).replace("@REPORT@", str(report))
        notebook.cells.insert(ids.index("kl"), nbformat.v4.new_code_cell(hostile))
        # the kernel lives on past the daemon's first rewrites (the rest takes under a second)
        notebook.cells.append(nbformat.v4.new_code_cell("import time\ntime.sleep(7)"))
        files = {"mini.ipynb": nbformat.writes(notebook).encode()}
        started = time.monotonic()
        doc, log = gradescope.simulate(zipped, root, files, python=reachable_python)
        print(f"graded in {time.monotonic() - started:.1f} s")
        assert gradescope.validate(doc) == [], log
        written = (root / "results" / "results.json").read_bytes()
        ran = sorted(p.name for p in report.iterdir())
        assert ran == ["daemon.log", "found.json"], (ran, doc["output"], log)
        beats = (report / "daemon.log").read_text()
        time.sleep(8)
        assert (root / "results" / "results.json").read_bytes() == written
        assert json.loads(written) == doc
        assert (report / "daemon.log").read_text() == beats, "the daemon outlived its grading"
        assert processes_of_test_users() == []
        assert set(beats.splitlines()) == {"alive", "rewrite: PermissionError"}, beats
        found = json.loads((report / "found.json").read_text())
        assert TEST_UID <= found.pop("uid") < TEST_UID + slots.MAX_SLOTS
        assert found == dict.fromkeys(
            ["hidden tests", "full MNIST", "results", "results, a new file"], "PermissionError"
        )
        assert sorted(p.name for p in (root / "results").iterdir()) == ["results.json"]
        assert doc["score"] == 5.0, log
        assert doc["extra_data"]["isolation"] == gradescope.UNPRIVILEGED
        assert doc["output"].splitlines()[-1] == "Isolation: unprivileged user, no sandbox."
    finally:
        for process in processes_of_test_users():
            with contextlib.suppress(psutil.Error):
                process.kill()
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(report, ignore_errors=True)
