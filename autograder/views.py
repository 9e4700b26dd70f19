"""Render the three views of a parsed template: student, solution and nbgrader source.

Each view is a list of `Rendered` cells whose lines keep their template line numbers, so a
view cell that does not parse is reported at the template line it came from.
"""

import ast
import copy
import re
from dataclasses import dataclass

import nbformat
from IPython.core.inputtransformer2 import TransformerManager

from autograder.template import Cell, Line, Region, Template

# nbgrader's ClearSolutions.code_stub is one string for a whole course (see course.py), and it
# must parse wherever a region stands: `...` is a statement and an expression alike, while
# `raise NotImplementedError()` is a syntax error inside `nn.Sequential( ... )`.
CODE_STUB = ("# YOUR CODE HERE", "...")
TEXT_STUB = "YOUR ANSWER HERE"
SKIP_TAG = "skip-execution"  # nbclient's (and so nbconvert's) default tag for cells to skip
VIEWS = ("student", "solution", "nbgrader")


@dataclass
class Rendered:
    """A cell of a view: its lines (text, template line) and its metadata."""

    kind: str
    lines: list[Line]
    metadata: dict

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


def student_region(cell: Cell, region: Region) -> list[Line]:
    """What replaces a region in the student view (and in nbgrader's release)."""
    if region.hidden:
        return []
    lines = hint_lines(region, cell.kind)
    if cell.kind == "code":
        lines += [Line(region.indent + stub, region.begin) for stub in CODE_STUB]
    elif cell.manual is not None:
        lines.append(Line(TEXT_STUB, region.begin))
    return lines


def nbgrader_region(cell: Cell, region: Region) -> list[Line]:
    """A region in nbgrader's markers: hints outside them, so the release keeps the hints."""
    if region.hidden:
        return wrap(region, "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS")
    if cell.kind == "markdown" and cell.manual is None:
        return student_region(cell, region)  # nbgrader grades every markdown solution cell
    return hint_lines(region, cell.kind) + wrap(region, "### BEGIN SOLUTION", "### END SOLUTION")


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
    lines: list[Line] = []
    for segment in cell.segments:
        if isinstance(segment, Line):
            lines.append(segment)
        elif view == "solution":
            lines.extend(segment.body)
        elif view == "student":
            lines.extend(student_region(cell, segment))
        else:
            lines.extend(nbgrader_region(cell, segment))
    return lines


def view_metadata(cell: Cell, view: str) -> dict:
    """Template metadata, plus the skip tag for cells that need answers (student, nbgrader)."""
    metadata = copy.deepcopy(cell.metadata)
    if view != "solution" and (cell.skip or cell.test is not None):
        tags = metadata.setdefault("tags", [])
        if SKIP_TAG not in tags:
            tags.append(SKIP_TAG)
    return metadata


def render(template: Template, view: str) -> list[Rendered]:
    """Every cell of `template` in `view`, nbgrader metadata added to the nbgrader view."""
    cells = [
        Rendered(c.kind, render_lines(c, view), view_metadata(c, view)) for c in template.cells
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
    if cell.has_solution and cell.kind == "code":
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


def python_source(source: str) -> str:
    """Cell source with IPython syntax (magics, `!cmd`) turned into plain Python."""
    return TransformerManager().transform_cell(source)


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
                f"parse: {exc.msg} (expected valid Python; a region's stub is '...')"
            )
    return errors


def to_notebook(template: Template, cells: list[Rendered]) -> nbformat.NotebookNode:
    """An nbformat notebook of rendered cells, with deterministic cell ids."""
    metadata = {k: v for k, v in template.metadata.items() if k != "jupytext"}
    nb = nbformat.v4.new_notebook(metadata=metadata)
    for i, cell in enumerate(cells):
        make = nbformat.v4.new_code_cell if cell.kind == "code" else nbformat.v4.new_markdown_cell
        if cell.kind == "raw":
            make = nbformat.v4.new_raw_cell
        nb.cells.append(make(source=cell.source, metadata=cell.metadata, id=f"cell-{i:03d}"))
    return nb
