"""The Gradescope autograder zip: results.json's format, the zip, and its run in Gradescope's
directories laid out in a temporary root (docs/gradescope.md)."""

import copy
import importlib.metadata as metadata
import json
import math
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import nbformat
import pytest

from autograder import cli, course, demo, gradescope, job, sandbox
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
            job.TestResult("plain", 2.0, 2.0, "passed: check_a"),
            job.TestResult("mixed", 0.0, 3.0, "passed: check_b\nfailed: hidden test 1"),
            job.TestResult("essay", None, 1.0, "awaiting manual grading"),
        ],
        notes=["graded WITHOUT the sandbox (--no-sandbox)"],
        sandboxed=False,
    )
    doc = gradescope.results_document("mini", result, CELLS, 7.25, {"plain": 1.5, "mixed": 2.0})
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
        "Graded without the sandbox: Gradescope runs each submission in a container.",
    ]


def test_a_submission_that_cannot_be_graded_scores_zero_and_says_why() -> None:
    release = nbformat.v4.new_notebook(
        cells=[graded_cell("plain", 2), graded_cell("essay", 1, True)]
    )
    result = gradescope.not_graded(release, "no notebook (.ipynb) in the submission")
    doc = gradescope.results_document("mini", result, [CELLS[0], CELLS[2]], 1.0, {})
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


def wheel_name() -> str:
    return f"dgm_labs-{metadata.version('dgm-labs')}-py3-none-any.whl"


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
        f"wheels/{wheel_name()}",
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
    assert installed == [f"wheels/{wheel_name()}"]
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
    assert "Graded without the sandbox" not in doc["output"]
