"""Render the three views of a parsed template: student, solution and nbgrader source.

Each view is a list of `Rendered` cells whose lines keep their template line numbers, so a
view cell that does not parse is reported at the template line it came from.
"""

import ast
import copy
import re
from dataclasses import dataclass

import nbformat

from autograder import stubs
from autograder.stubs import python_source
from autograder.template import Cell, Line, Region, Template

# The stub of most regions, and nbgrader's ClearSolutions.code_stub for the course (see
# course.py): `...` is a statement and an expression alike. A region where it does not parse
# (an element followed by others, a dict entry, keyword arguments) gets its own stub, which
# the nbgrader view carries in the cell's metadata under STUBS_KEY for the release.
CODE_STUB = stubs.DEFAULT
TEXT_STUB = "YOUR ANSWER HERE"
SKIP_TAG = "skip-execution"  # nbclient's (and so nbconvert's) default tag for cells to skip
# Cells wholly inside a region that spans cells: in the nbgrader view for the solution, and
# removed from the release by nbconvert's TagRemovePreprocessor (see nbgrader_release.py).
SOLUTION_ONLY_TAG = "solution-only"
STUBS_KEY = "dgm_labs"
VIEWS = ("student", "solution", "nbgrader")
__all__ = ["python_source"]


@dataclass
class Rendered:
    """A cell of a view: its lines (text, template line), its metadata, and the index of the
    template cell it renders (the student view leaves out cells wholly inside a region)."""

    kind: str
    lines: list[Line]
    metadata: dict
    origin: int = 0

    @property
    def source(self) -> str:
        return "\n".join(line.text for line in self.lines)


def hint_lines(region: Region, kind: str) -> list[Line]:
    """The region's `#!MSG` hints: `# TODO: ...` comments in code, plain lines in markdown."""
    out = []
    for hint in region.hints:
        text = re.sub(r"^TODO:?\s*", "", hint)  # seed hints often repeat the TODO themselves
        out.append(Line(f"{region.indent}# TODO: {text}" if kind == "code" else hint, region.begin))
    return out


def student_region(cell: Cell, region: Region, stub: tuple[str, ...]) -> list[Line]:
    """What replaces a region in the student view (and in nbgrader's release): its hints and
    stub where it opens, nothing where it continues from an earlier cell or is hidden."""
    if region.hidden or region.opened_in is not None:
        return []
    lines = hint_lines(region, cell.kind)
    if cell.kind == "code":
        lines += [Line(region.indent + text, region.begin) for text in stub]
    elif cell.manual is not None:
        lines.append(Line(TEXT_STUB, region.begin))
    return lines


def nbgrader_region(cell: Cell, region: Region, stub: tuple[str, ...]) -> list[Line]:
    """A region in nbgrader's markers: hints outside them, so the release keeps the hints."""
    if region.hidden:
        return wrap(region, "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS")
    if cell.kind == "markdown" and cell.manual is None:
        return student_region(cell, region, stub)  # nbgrader grades every markdown solution cell
    hints = hint_lines(region, cell.kind) if region.opened_in is None else []
    return hints + wrap(region, "### BEGIN SOLUTION", "### END SOLUTION")


def wrap(region: Region, begin: str, end: str) -> list[Line]:
    """The region's body between two marker lines at the region's indentation."""
    last = region.body[-1].lineno + 1 if region.body else region.begin
    return [
        Line(region.indent + begin, region.begin),
        *region.body,
        Line(region.indent + end, last),
    ]


def render_lines(cell: Cell, view: str) -> list[Line]:
    """The cell's lines in one view."""
    chosen = stubs.choose(cell) if view != "solution" else {}
    lines: list[Line] = []
    for segment in cell.segments:
        if isinstance(segment, Line):
            lines.append(segment)
        elif view == "solution" or (view == "nbgrader" and cell.solution_only):
            lines.extend(segment.body)
        elif view == "student":
            lines.extend(student_region(cell, segment, chosen.get(id(segment), CODE_STUB)))
        else:
            lines.extend(nbgrader_region(cell, segment, chosen.get(id(segment), CODE_STUB)))
    return lines


def release_stubs(cell: Cell) -> list[str] | None:
    """The stub of each solution marker of a code cell in the nbgrader view, in order, where
    one differs from the course's default (None: the default serves every marker)."""
    if cell.kind != "code" or cell.solution_only:
        return None
    chosen = stubs.choose(cell)
    found = [
        "\n".join(chosen.get(id(r), CODE_STUB)) if r.opened_in is None else ""
        for r in cell.regions
        if not r.hidden
    ]
    default = "\n".join(CODE_STUB)
    return found if any(stub != default for stub in found) else None


def view_metadata(cell: Cell, view: str) -> dict:
    """Template metadata, plus the skip tag for cells that need answers (student, nbgrader),
    and in the nbgrader view what the release needs: solution-only tags, region stubs."""
    metadata = copy.deepcopy(cell.metadata)
    wanted = []
    if view != "solution" and (cell.skip or cell.test is not None):
        wanted.append(SKIP_TAG)
    if view == "nbgrader" and cell.solution_only:
        wanted.append(SOLUTION_ONLY_TAG)
    for tag in wanted:
        tags = metadata.setdefault("tags", [])
        if tag not in tags:
            tags.append(tag)
    found = release_stubs(cell) if view == "nbgrader" else None
    if found is not None:
        metadata[STUBS_KEY] = {"stubs": found}
    return metadata


def render(template: Template, view: str) -> list[Rendered]:
    """Every cell of `template` in `view` (the student view leaves out the cells wholly inside
    a region), nbgrader metadata added to the nbgrader view."""
    cells = [
        Rendered(c.kind, render_lines(c, view), view_metadata(c, view), origin=i)
        for i, c in enumerate(template.cells)
        if view != "student" or not c.solution_only
    ]
    if view == "nbgrader":
        add_nbgrader_metadata(template.cells, cells)
    return cells


def add_nbgrader_metadata(cells: list[Cell], rendered: list[Rendered]) -> None:
    """Mark test, manual, answer and locked cells for nbgrader, with deterministic grade ids."""
    taken: set[str] = {g.id for c in cells for g in (c.test, c.manual) if g is not None}
    for cell, out in zip(cells, rendered, strict=True):
        meta = nbgrader_cell_metadata(cell, out, taken)
        if meta is not None:
            out.metadata["nbgrader"] = {**meta, "schema_version": 3}


def nbgrader_cell_metadata(cell: Cell, out: Rendered, taken: set[str]) -> dict | None:
    """nbgrader's metadata for one cell, or None for an ordinary cell."""
    if cell.test is not None:
        grade = cell.test
        return {
            "grade": True,
            "solution": False,
            "locked": True,
            "grade_id": grade.id,
            "points": grade.points,
        }
    if cell.manual is not None:
        grade = cell.manual
        return {
            "grade": True,
            "solution": True,
            "locked": False,
            "grade_id": grade.id,
            "points": grade.points,
        }
    if cell.has_solution and cell.kind == "code" and not cell.solution_only:
        return {
            "grade": False,
            "solution": True,
            "locked": False,
            "grade_id": fresh_id("answer", out, taken),
        }
    if cell.locked:
        return {
            "grade": False,
            "solution": False,
            "locked": True,
            "grade_id": fresh_id("provided", out, taken),
        }
    return None


def fresh_id(prefix: str, out: Rendered, taken: set[str]) -> str:
    """A grade id named after the first thing the cell defines, unique in the notebook."""
    name = first_definition(out.source) or "cell"
    grade_id, n = f"{prefix}-{name}", 2
    while grade_id in taken:
        grade_id, n = f"{prefix}-{name}-{n}", n + 1
    taken.add(grade_id)
    return grade_id


def first_definition(source: str) -> str | None:
    """The first function, class or variable a cell defines at top level, if it parses."""
    try:
        tree = ast.parse(python_source(source))
    except SyntaxError:
        return None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            return node.name
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            return node.targets[0].id
    return None


def syntax_errors(template: Template, view: str, cells: list[Rendered]) -> list[str]:
    """`FILE:LINE: message` for every code cell of a view that does not parse."""
    errors = []
    for cell in cells:
        if cell.kind != "code" or not cell.lines:
            continue
        try:
            ast.parse(python_source(cell.source))
        except SyntaxError as exc:
            index = min(max((exc.lineno or 1) - 1, 0), len(cell.lines) - 1)
            errors.append(
                f"{template.path}:{cell.lines[index].lineno}: the {view} view of this cell does not "
                f"parse: {exc.msg} (expected valid Python; a region must stand where a "
                "statement, an expression, an element, a dict entry or keyword arguments can)"
            )
    return errors


def to_notebook(template: Template, cells: list[Rendered]) -> nbformat.NotebookNode:
    """An nbformat notebook of rendered cells, with deterministic cell ids."""
    metadata = {k: v for k, v in template.metadata.items() if k != "jupytext"}
    nb = nbformat.v4.new_notebook(metadata=metadata)
    for cell in cells:
        make = nbformat.v4.new_code_cell if cell.kind == "code" else nbformat.v4.new_markdown_cell
        if cell.kind == "raw":
            make = nbformat.v4.new_raw_cell
        nb.cells.append(make(source=cell.source, metadata=cell.metadata, id=f"cell-{cell.origin:03d}"))
    return nb
