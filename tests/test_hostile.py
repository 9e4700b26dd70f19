"""The hostile corpus: submissions that try to earn points they did not, or to hurt the course.

Each file in tests/hostile/ is one submission of the small test lab tests/templates/mini.md,
graded by the real workflow (release, sandboxed kernel, verdicts in the grader, nbgrader's
gradebook, feedback). A file is a header and sections (see `parse`):

    # expect: 0              the exact score the submission must get (of 5 autograded points)
    # base: wrong            start from wrong answers (default) or from the full solution
    # %% answer-kl           the source of an answer cell (by grade id)
    # %% before kl           a code cell of the student's, inserted before the cell `kl`
    # %% after kl            ... or after it (`after end`: at the end of the notebook)
    # %% notebook            Python the test runs on the notebook (`nb`) before submitting
    # %% file PATH           an extra file in the submission's folder
    # %% raw                 the submitted file's whole content (not a notebook at all)
    # %% assert              Python the test runs after grading (`results`, `notebook`, `ctx`)

{PORT}, {MARKER}, {COURSE} and {REPO} in a file are replaced by a port a server of the test
listens on, a path on the grading machine that must never appear, the course directory and
this repository.
The wrong answers below score 0; every trick must leave a submission at the score its code
earns without the trick, and the whole batch is graded by one `autograde` call.
"""

import hashlib
import json
import os
import re
import socket
import threading
from pathlib import Path

import nbformat
import psutil
import pytest

from autograder import course, demo, sandbox, slots
from autograder.build import build
from tests.conftest import ROOT

pytestmark = pytest.mark.slow
MINI = ROOT / "tests" / "templates" / "mini.md"
CASES = sorted((ROOT / "tests" / "hostile").glob("*.py"))
WRONG = {
    "answer-reparameterize": "def reparameterize(mu, log_var):\n    return mu + torch.randn_like(mu)",
    "answer-kl": "def kl(mu, log_var):\n    return (mu**2 + log_var.exp() - 1 - log_var).sum(-1).mean()",
}
SECTION = re.compile(r"^# %% (.+)$", re.M)
TEST_UID = 60_917  # the sandbox user of this batch only (as root; else the grader's own)


def parse(path: Path) -> dict:
    """The header and sections of a hostile file."""
    text = path.read_text()
    header = dict(re.findall(r"^# (expect|base|why): (.+)$", text.split("# %%")[0], re.M))
    parts = SECTION.split(text)
    sections = [(parts[i].strip(), parts[i + 1].strip("\n")) for i in range(1, len(parts), 2)]
    return {
        "expect": float(header["expect"]),
        "base": header.get("base", "wrong"),
        "why": header.get("why", ""),
        "sections": sections,
    }


def fill(text: str, ctx: dict) -> str:
    """The case's text with the test's port and paths put in."""
    for key in ("port", "marker", "course", "repo"):
        text = text.replace("{" + key.upper() + "}", str(ctx[key]))
    return text


def submission(case: dict, release, solution, ctx: dict) -> tuple[str | None, dict]:
    """The submitted notebook's text and the extra files of a hostile case."""
    answers = {} if case["base"] == "full" else dict(WRONG)
    files, edits, inserts, raw = {}, [], [], None
    for head, body in case["sections"]:
        body = fill(body, ctx)
        kind, _, arg = head.partition(" ")
        if kind.startswith("answer-"):
            answers[kind] = body
        elif kind in ("before", "after"):
            inserts.append((kind, arg, body))
        elif kind == "notebook":
            edits.append(body)
        elif kind == "file":
            files[arg] = body
        elif kind == "raw":
            raw = body
    nb = demo.fill(release, solution, answers)
    for kind, target, body in inserts:
        ids = [c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells]
        at = len(nb.cells) if target == "end" else ids.index(target) + (kind == "after")
        nb.cells.insert(at, nbformat.v4.new_code_cell(body))
    for code in edits:
        exec(code, {"nb": nb, "nbformat": nbformat})  # the test's own code, from the corpus
    return (raw if raw is not None else nbformat.writes(nb)), files


class Listener(threading.Thread):
    """A TCP server on 127.0.0.1 that counts connections: a sandbox must never reach it."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.connections = 0
        self.start()

    def run(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()


def digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Every hostile case and two honest students, graded in one batch."""
    if not sandbox.available():
        pytest.skip("bubblewrap cannot run here")
    out = tmp_path_factory.mktemp("hostile")
    assert build([MINI], out / "views") == []
    course_dir = out / "course"
    course.release(course_dir, [out / "views" / "nbgrader" / "mini.ipynb"])
    release = nbformat.read(course_dir / "release" / "mini" / "mini.ipynb", as_version=4)
    solution = nbformat.read(out / "views" / "solution" / "mini.ipynb", as_version=4)
    listener = Listener()
    ctx = {"port": listener.port, "marker": out / "MARKER", "course": course_dir, "repo": ROOT}
    honest = {
        "a-full": demo.fill(release, solution, {}),
        "a-wrong": demo.fill(release, solution, WRONG),
    }
    for student, nb in honest.items():
        write(course_dir, student, nbformat.writes(nb), {})
    mp = pytest.MonkeyPatch()
    mp.setattr(course, "CELL_TIMEOUT_S", 15)
    mp.setattr(course, "SUBMISSION_TIMEOUT_S", 60)
    mp.setattr(course, "TIMEOUT_RETRIES", 0)
    # this batch's processes, told from others' (the pool's workers read it when spawned)
    mp.setenv("AUTOGRADER_SANDBOX_UID", str(TEST_UID))

    course.autograde(course_dir)  # the honest students first: their results must not change
    before = {s: results_of(course_dir, s) for s in honest}
    for path in CASES:
        text, files = submission(parse(path), release, solution, ctx)
        write(course_dir, f"h-{path.stem}", text, files)
    protected = {d: digest(course_dir / d) for d in ("source", "release", "submitted")}
    outcomes = course.autograde(course_dir)
    mp.undo()
    listener.server.close()
    return {
        "course": course_dir,
        "ctx": ctx,
        "outcomes": outcomes,
        "before": before,
        "protected": protected,
        "listener": listener,
    }


def write(course_dir: Path, student: str, text: str, files: dict) -> None:
    folder = course_dir / "submitted" / student / "mini"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "mini.ipynb").write_text(text)
    for name, body in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(body)


def results_of(course_dir: Path, student: str) -> dict:
    return json.loads((course_dir / "autograded" / student / "mini" / "results.json").read_text())


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 40


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_hostile_submission_scores_what_its_code_earns(graded, path: Path) -> None:
    case = parse(path)
    results = results_of(graded["course"], f"h-{path.stem}")
    assert results["score"] == case["expect"], (case["why"], results)
    for head, body in case["sections"]:
        if head == "assert":
            autograded = graded["course"] / "autograded" / f"h-{path.stem}" / "mini" / "mini.ipynb"
            notebook = nbformat.read(autograded, as_version=4) if autograded.exists() else None
            exec(
                fill(body, graded["ctx"]),
                {"results": results, "notebook": notebook, "ctx": graded["ctx"]},
            )


def test_the_batch_went_on_and_nothing_outlived_it(graded) -> None:
    students = {o.student for o in graded["outcomes"].outcomes}
    assert not graded["outcomes"].lost
    assert {f"h-{p.stem}" for p in CASES} <= students
    if os.getuid() != 0:
        pytest.skip("a sandbox runs as the grading user: its processes cannot be told apart")
    leftovers = [
        p
        for p in psutil.process_iter(["uids"])
        if p.info["uids"] and TEST_UID <= p.info["uids"].real < TEST_UID + slots.MAX_SLOTS
    ]
    assert leftovers == [], "a process of the sandbox outlived its grading"


def test_honest_results_and_the_course_are_unchanged(graded) -> None:
    course_dir = graded["course"]
    for student, before in graded["before"].items():  # messages quote statistics: scores only
        after = results_of(course_dir, student)
        assert [(t["name"], t["score"], t["status"]) for t in after["tests"]] == [
            (t["name"], t["score"], t["status"]) for t in before["tests"]
        ]
    assert (
        graded["before"]["a-full"]["score"] == 5.0 and graded["before"]["a-wrong"]["score"] == 0.0
    )
    for folder, files in graded["protected"].items():
        assert digest(course_dir / folder) == files, f"{folder}/ changed while grading"
    assert not graded["ctx"]["marker"].exists(), "a submission ran code in the grader"
    assert graded["listener"].connections == 0, "a sandbox reached the network"


def test_the_gradebook_holds_the_graders_scores(graded) -> None:
    from nbgrader.api import Gradebook

    course_dir = graded["course"]
    with Gradebook(f"sqlite:///{course_dir / 'gradebook.db'}", course.COURSE_ID) as gb:
        for path in CASES:
            student = f"h-{path.stem}"
            submission = gb.find_submission("mini", student)
            assert submission.score == results_of(course_dir, student)["score"]
