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


@functools.lru_cache(maxsize=4096)  # each view asks again for the same cells
def python_source(source: str) -> str:
    """Cell source with IPython syntax (magics, `!cmd`) turned into plain Python."""
    return transformer().transform_cell(source)


def parse(source: str) -> ast.Module | None:
    try:
        return ast.parse(python_source(source))
    except SyntaxError:
        return None


def stands_alone(tree: ast.Module, lineno: int) -> bool:
    """The placeholder on line `lineno` is not swallowed by the code after it.

    Inside brackets lines join: `...` above a line `(3, 4)` parses as a call of `...`, `[0]`
    as a subscript, `.x` as an attribute. Then the placeholder has eaten the next element.
    """
    for node in ast.walk(tree):
        head = (
            node.func if isinstance(node, ast.Call)
            else node.value if isinstance(node, ast.Subscript | ast.Attribute)
            else None
        )  # fmt: skip
        if isinstance(head, ast.Constant) and head.value is Ellipsis and head.lineno == lineno:
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
    """The stub whose placeholder parses in place of `region`, the rest of the cell as solved,
    and stands there as a whole (it does not join the code after it).

    Where none does (or the solution itself does not parse) the default stays, and the views'
    syntax check reports the cell at its template line.
    """
    if parse(with_placeholder(cell, region, None)[0]) is None:
        return DEFAULT
    for placeholder in PLACEHOLDERS:
        source, lineno = with_placeholder(cell, region, placeholder)
        tree = parse(source)
        if tree is not None and stands_alone(tree, lineno):
            return (COMMENT, placeholder)
    return DEFAULT


def with_placeholder(cell: Cell, target: Region, placeholder: str | None) -> tuple[str, int]:
    """The cell's solution source with `target` replaced by its stub (None: kept), and the
    1-based line of the placeholder. The stub's comment line stays: IPython would read a
    `...:` on a cell's second line as a prompt and strip it."""
    lines: list[str] = []
    at = 0
    for segment in cell.segments:
        if isinstance(segment, Line):
            lines.append(segment.text)
        elif segment is target and placeholder is not None:
            lines += [target.indent + COMMENT, target.indent + placeholder]
            at = len(lines)
        else:
            lines.extend(line.text for line in segment.body)
    return "\n".join(lines), at
