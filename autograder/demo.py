"""The demo: build, release and autograde three example submissions of every lab.

The submissions are made from the views, so they follow the labs as they change:
`full` fills every answer with the reference solution, `untouched` is the release as a
student receives it, and `partial` is `full` with the answers listed in
`examples/LAB.partial.py` (a `# %% GRADE_ID` line, then the student's cell) put in instead.
"""

import json
import re
import shutil
from pathlib import Path

import nbformat

from autograder import course
from autograder.build import build

STUDENTS = ("full", "untouched", "partial")


def read_partial(path: Path) -> dict[str, str]:
    """The answers of a partly correct submission, by grade id."""
    if not path.exists():
        return {}
    chunks = re.split(r"^# %% (\S+)\n", path.read_text(), flags=re.M)
    return {
        grade_id: body.rstrip("\n")
        for grade_id, body in zip(chunks[1::2], chunks[2::2], strict=True)
    }


def fill(
    release: nbformat.NotebookNode, solution: nbformat.NotebookNode, answers: dict[str, str] | None
) -> nbformat.NotebookNode:
    """The release with its answer cells filled: from `answers` by grade id, else the solution."""
    nb = nbformat.from_dict(json.loads(json.dumps(release)))
    references = reference_answers(nb, solution)
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution"):
            cell.source = (answers or {}).get(meta["grade_id"], references[cell.id])
    return nb


def reference_answers(
    release: nbformat.NotebookNode, solution: nbformat.NotebookNode
) -> dict[str, str]:
    """What a student who solves everything writes in each released cell, by cell id: the
    solution's cell, and after it the code of the solution cells the release leaves out (the
    inside of a region across cells), which the student writes in that cell's stub."""
    released = {c.id for c in release.cells}
    answers: dict[str, str] = {}
    current = None
    for cell in solution.cells:
        if cell.id in released:
            current, answers[cell.id] = cell.id, cell.source
        elif current is not None and cell.cell_type == "code":
            answers[current] += "\n\n" + cell.source
    return answers


def submit(course_dir: Path, lab: str, release_nb: Path, solution_nb: Path, examples: Path) -> None:
    """Write submitted/STUDENT/LAB/LAB.ipynb for the three example students."""
    release = nbformat.read(release_nb, as_version=4)
    solution = nbformat.read(solution_nb, as_version=4)
    notebooks = {
        "full": fill(release, solution, {}),
        "untouched": release,
        "partial": fill(release, solution, read_partial(examples / f"{lab}.partial.py")),
    }
    for student, nb in notebooks.items():
        target = course_dir / "submitted" / student / lab / f"{lab}.ipynb"
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, target)


def grade_table(course_dir: Path) -> list[dict]:
    """One row per submission from its results.json."""
    rows = []
    for student, lab in course.submissions(course_dir):
        results = json.loads(
            (course_dir / "autograded" / student / lab / "results.json").read_text()
        )
        manual = sum(1 for t in results["tests"] if t["output"] == "awaiting manual grading")
        rows.append(
            {
                "student": student,
                "lab": lab,
                "score": results["score"],
                "max_score": results["max_score"],
                "manual": manual,
                "error": results.get("output"),
            }
        )
    return rows


def format_table(rows: list[dict]) -> str:
    """The grade table as aligned text."""
    lines = [f"{'lab':<22} {'student':<10} {'score':>6} {'max':>6}  manual answers to grade"]
    for r in sorted(rows, key=lambda r: (r["lab"], r["student"])):
        note = f"  ERROR: {r['error'][:60]}" if r["error"] else ""
        lines.append(
            f"{r['lab']:<22} {r['student']:<10} {r['score']:>6.1f} {r['max_score']:>6.1f}  {r['manual']}{note}"
        )
    return "\n".join(lines)


def run_demo(
    templates: list[Path], out: Path, examples: Path, use_sandbox: bool = True
) -> list[dict]:
    """Build, release, submit, autograde; return the grade table's rows."""
    errors = build(templates, out / "views")
    if errors:
        raise SystemExit("\n".join(errors))
    course_dir = out / "course"
    shutil.rmtree(course_dir, ignore_errors=True)
    views = [out / "views" / "nbgrader" / f"{t.stem}.ipynb" for t in templates]
    for released in course.release(course_dir, views):
        lab = released.parent.name
        submit(course_dir, lab, released, out / "views" / "solution" / released.name, examples)
    course.autograde(course_dir, use_sandbox)
    return grade_table(course_dir)
