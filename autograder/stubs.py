"""The stub of each code region: the first placeholder that parses where the region stands.

nbgrader's default stub (`raise NotImplementedError()`) is a statement; a region can also be
an expression in parentheses, an element or argument among others, a dict entry or keyword
arguments. Each needs its own placeholder, decided by parsing the cell with it in place.
"""

import ast
import functools

from IPython.core.inputtransformer2 import TransformerManager

from autograder.template import Cell, Line, Region

COMMENT = "# YOUR CODE HERE"
# In order: a statement or a lone expression or the last element; an element or argument
# followed by others; an entry of a dict; keyword arguments after keyword arguments.
PLACEHOLDERS = ("...", "...,", "...: ...,", "**...,")
DEFAULT = (COMMENT, PLACEHOLDERS[0])


@functools.cache
def transformer() -> TransformerManager:
    return TransformerManager()


def python_source(source: str) -> str:
    """Cell source with IPython syntax (magics, `!cmd`) turned into plain Python."""
    return transformer().transform_cell(source)


def parses(source: str) -> bool:
    try:
        ast.parse(python_source(source))
    except SyntaxError:
        return False
    return True


def choose(cell: Cell) -> dict[int, tuple[str, ...]]:
    """The stub lines of each code region that opens in `cell`, by `id(region)`."""
    if cell.kind != "code":
        return {}
    return {
        id(region): first_parsing(cell, region)
        for region in cell.regions
        if not region.hidden and region.opened_in is None
    }


def first_parsing(cell: Cell, region: Region) -> tuple[str, ...]:
    """The stub whose placeholder parses in place of `region`, the rest of the cell as solved.

    Where none parses (or the solution itself does not) the default stays, and the views'
    syntax check reports the cell at its template line.
    """
    if not parses(with_placeholder(cell, region, None)):
        return DEFAULT
    for placeholder in PLACEHOLDERS:
        if parses(with_placeholder(cell, region, placeholder)):
            return (COMMENT, placeholder)
    return DEFAULT


def with_placeholder(cell: Cell, target: Region, placeholder: str | None) -> str:
    """The cell's solution source with `target` replaced by `placeholder` (None: kept)."""
    lines: list[str] = []
    for segment in cell.segments:
        if isinstance(segment, Line):
            lines.append(segment.text)
        elif segment is target and placeholder is not None:
            lines.append(target.indent + placeholder)
        else:
            lines.extend(line.text for line in segment.body)
    return "\n".join(lines)
