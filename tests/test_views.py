"""The views: golden files for small templates, and properties over every template.

Refresh the golden files after an intended change with `make golden`.
"""

import ast
import os
import re
from pathlib import Path

import jupytext
import nbformat
import pytest

from autograder.build import build, build_views
from autograder.stubs import COMMENT, PLACEHOLDERS
from autograder.template import Line, read_template, tag_of
from autograder.views import TEXT_STUB, python_source, render
from tests.conftest import ROOT, all_templates

GOLDEN = ROOT / "tests" / "golden"
COMPAT = [p for p in all_templates() if p.parent.name == "compat"]  # in the seed course's style
GOLDEN_TEMPLATES = {
    "mini": ROOT / "tests" / "templates" / "mini.md",
    "shapes": ROOT / "tests" / "templates" / "shapes.md",
    **{f"compat/{p.stem}": p for p in COMPAT},
}
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


def assert_golden(golden: Path, got: str) -> None:
    if UPDATE:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(got)
    assert got == golden.read_text(), (
        f"{golden} is stale: run `make golden` if the change is intended"
    )


@pytest.mark.parametrize("name", sorted(GOLDEN_TEMPLATES))
@pytest.mark.parametrize("view", ["student", "solution", "nbgrader"])
def test_golden_views(name: str, view: str, tmp_path: Path) -> None:
    template = GOLDEN_TEMPLATES[name]
    assert build([template], tmp_path) == []
    got = (tmp_path / view / f"{template.stem}.ipynb").read_text()
    assert_golden(GOLDEN / name / f"{view}.ipynb", got)


@pytest.mark.parametrize("name", sorted(GOLDEN_TEMPLATES))
def test_golden_warnings(name: str) -> None:
    """The slips each template makes, read as meant: the warnings are part of the golden views."""
    template = read_template(GOLDEN_TEMPLATES[name])
    got = "".join(f"{w.removeprefix(str(ROOT) + '/')}\n" for w in template.warnings)
    assert_golden(GOLDEN / name / "warnings.txt", got)


def ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


TEMPLATES = all_templates()


@pytest.mark.parametrize("path", TEMPLATES, ids=ids(TEMPLATES))
def test_round_trip_through_ipynb_leaves_template_unchanged(path: Path) -> None:
    text = path.read_text()
    notebook = jupytext.reads(text, fmt="md")
    back = jupytext.writes(
        jupytext.reads(jupytext.writes(notebook, fmt="ipynb"), fmt="ipynb"), fmt="md"
    )
    version = re.compile(r"^\s*jupytext_version: .*$", re.M)  # the recorded version may differ
    assert version.sub("", back) == version.sub("", text)


@pytest.mark.parametrize("path", TEMPLATES, ids=ids(TEMPLATES))
def test_solution_view_is_template_minus_tag_lines(path: Path) -> None:
    notebooks, errors = build_views(read_template(path))
    assert errors == []
    expected = [
        "\n".join(line for line in cell.source.split("\n") if tag_of(line) is None)
        for cell in jupytext.reads(path.read_text(), fmt="md").cells
    ]
    assert [c.source for c in notebooks["solution"].cells] == expected


def region_only_lines(path: Path) -> list[set[str]]:
    """Per cell: the non-blank lines that stand only inside regions (hidden ones included)."""
    out = []
    for cell in read_template(path).cells:
        outside = {s.text.strip() for s in cell.segments if isinstance(s, Line)}
        inside = {line.text.strip() for r in cell.regions for line in r.body}
        out.append({t for t in inside - outside if t})
    return out


def student_view_lines_allowed(path: Path) -> list[set[str]]:
    """Per cell: the lines a student view may show: outside regions, hints and stubs."""
    allowed = []
    for cell in read_template(path).cells:
        lines = {s.text.strip() for s in cell.segments if isinstance(s, Line)}
        for region in cell.regions:
            lines |= {h for hint in region.hints for h in (hint, f"# TODO: {hint}")}
        lines |= {COMMENT, *PLACEHOLDERS, TEXT_STUB, ""}
        allowed.append(lines)
    return allowed


def assert_no_region_line_leaks(path: Path, notebook: nbformat.NotebookNode) -> None:
    """No student cell shows a line that stands only inside a region of its template cell
    (cells wholly inside a region are not shown at all: their ids say which cell each is)."""
    hidden, allowed = region_only_lines(path), student_view_lines_allowed(path)
    for cell in notebook.cells:
        origin = int(cell.id.removeprefix("cell-"))
        secret, ok = hidden[origin], allowed[origin]
        shown = {line.strip() for line in cell.source.split("\n")}
        assert not shown & secret, f"{path}: region lines reach the student view: {shown & secret}"
        extra = {s for s in shown - ok if not s.startswith("# TODO:")}
        assert not extra, f"{path}: unexpected lines in the student view: {extra}"


@pytest.mark.parametrize("path", TEMPLATES, ids=ids(TEMPLATES))
def test_no_line_from_a_region_reaches_the_student_view(path: Path) -> None:
    notebooks, _ = build_views(read_template(path))
    assert_no_region_line_leaks(path, notebooks["student"])


@pytest.mark.parametrize("path", TEMPLATES, ids=ids(TEMPLATES))
def test_every_code_cell_of_every_view_parses(path: Path) -> None:
    notebooks, _ = build_views(read_template(path))
    for view, nb in notebooks.items():
        for cell in nb.cells:
            if cell.cell_type == "code":
                ast.parse(python_source(cell.source), filename=f"{path} ({view} view)")


@pytest.mark.parametrize("path", TEMPLATES, ids=ids(TEMPLATES))
def test_cells_needing_answers_carry_the_skip_tag_and_no_magic(path: Path) -> None:
    template = read_template(path)
    for student in render(template, "student"):
        cell = template.cells[student.origin]
        tagged = "skip-execution" in student.metadata.get("tags", [])
        assert tagged == (cell.skip or cell.test is not None)
        assert "#!" not in student.source and "SKIPQUESTEXEC" not in student.source


def test_solutions_folder_is_up_to_date(tmp_path: Path) -> None:
    labs = sorted((ROOT / "labs").glob("*.md"))
    assert build(labs, tmp_path) == []
    built = sorted(p.name for p in (tmp_path / "solution").glob("*.ipynb")) if labs else []
    committed = sorted(p.name for p in (ROOT / "solutions").glob("*.ipynb"))
    assert committed == built, "solutions/ does not match labs/: run `make build` and commit"
    for name in built:
        fresh = (tmp_path / "solution" / name).read_text()
        assert (ROOT / "solutions" / name).read_text() == fresh, (
            f"solutions/{name} is stale: run `make build`"
        )
