"""Parse a tagged lab template once into a `Template` that every view renders from.

The template is a Jupytext-markdown notebook. Jupytext splits it into cells but keeps no
source line numbers, so each cell is located in the raw text and every line keeps its
template line number: errors read `FILE:LINE: what is wrong (what was expected)`.
"""

import re
from dataclasses import dataclass, field
from pathlib import Path

import jupytext

TAG_PREFIX = "#!TAG"
MSG_PREFIX = "#!MSG"
HEADER_WORDS = {"SKIPQUESTEXEC", "TEST", "MANUAL", "LOCKED"}
REGION_WORDS = {"HWBEGIN", "HWEND", "HIDDENBEGIN", "HIDDENEND"}
ID_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


class TemplateError(ValueError):
    """One or more errors in a template; `errors` holds every `FILE:LINE: message`."""

    def __init__(self, errors: list[str]):
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass
class Line:
    """A line of a cell with its 1-based line number in the template."""

    text: str
    lineno: int


@dataclass
class Region:
    """A solution region (`hidden=False`) or a hidden-test region, with its hints."""

    indent: str
    begin: int
    hidden: bool = False
    hints: list[str] = field(default_factory=list)
    body: list[Line] = field(default_factory=list)


@dataclass
class Grade:
    """The grading header of a TEST or MANUAL cell."""

    id: str
    points: float
    lineno: int


@dataclass
class Cell:
    """One notebook cell: its header tags and its lines and regions, in order."""

    kind: str
    lineno: int
    metadata: dict
    segments: list[Line | Region] = field(default_factory=list)
    skip: bool = False
    locked: bool = False
    test: Grade | None = None
    manual: Grade | None = None

    @property
    def regions(self) -> list[Region]:
        return [s for s in self.segments if isinstance(s, Region)]

    @property
    def has_solution(self) -> bool:
        return any(not r.hidden for r in self.regions)


@dataclass
class Template:
    """A parsed template: the notebook's metadata and its cells."""

    path: Path
    metadata: dict
    cells: list[Cell]


def tag_of(text: str) -> tuple[str, str] | None:
    """('TAG' or 'MSG', rest of the line) for a tag line, None for an ordinary line."""
    stripped = text.strip()
    for prefix in (TAG_PREFIX, MSG_PREFIX):
        if stripped.startswith(prefix):
            return prefix[2:], stripped[len(prefix) :].strip()
    return None


def read_template(path: Path) -> Template:
    """Parse the template at `path`; raise TemplateError listing every error in the file."""
    text = path.read_text(encoding="utf-8")
    notebook = jupytext.reads(text, fmt="md")
    starts = locate_cells(text, [c.source for c in notebook.cells])
    errors: list[str] = []
    cells = [
        parse_cell(path, nb_cell.cell_type, nb_cell.source, start, dict(nb_cell.metadata), errors)
        for nb_cell, start in zip(notebook.cells, starts, strict=True)
    ]
    check_unique_ids(path, cells, errors)
    if errors:
        raise TemplateError(errors)
    return Template(path, dict(notebook.metadata), cells)


def locate_cells(text: str, sources: list[str]) -> list[int]:
    """The 1-based template line where each cell's source starts, found in order."""
    starts, offset = [], 0
    for source in sources:
        found = text.find(source, offset) if source else -1
        if found < 0:  # an empty cell, or one jupytext rewrote: anchor it after the previous
            found = offset
        starts.append(text.count("\n", 0, found) + 1)
        offset = found + len(source)
    return starts


def parse_cell(
    path: Path, kind: str, source: str, start: int, metadata: dict, errors: list[str]
) -> Cell:
    """Split one cell into header tags, ordinary lines and regions, collecting errors."""
    cell = Cell(kind, start, metadata)
    lines = [Line(t, start + i) for i, t in enumerate(source.split("\n"))]
    body = parse_header(path, cell, lines, errors)
    parse_body(path, cell, body, errors)
    return cell


def parse_header(path: Path, cell: Cell, lines: list[Line], errors: list[str]) -> list[Line]:
    """Read the header tags at the top of the cell; return the lines after them."""
    i = 0
    while i < len(lines) and (tag := tag_of(lines[i].text)) and tag[0] == "TAG":
        word, *args = tag[1].split() or [""]
        if word not in HEADER_WORDS:
            break
        apply_header(path, cell, word, args, lines[i].lineno, errors)
        i += 1
    return lines[i:]


def apply_header(
    path: Path, cell: Cell, word: str, args: list[str], lineno: int, errors: list[str]
) -> None:
    """Record one header tag on `cell`, checking where it may stand and its arguments."""
    where = f"{path}:{lineno}"
    if word in ("SKIPQUESTEXEC", "TEST", "LOCKED") and cell.kind != "code":
        errors.append(f"{where}: #!TAG {word} in a {cell.kind} cell (expected a code cell)")
        return
    if word == "SKIPQUESTEXEC":
        cell.skip = True
    elif word == "LOCKED":
        cell.locked = True
    else:
        grade = parse_grade(f"{where}: #!TAG {word}", args, lineno, errors)
        if grade is not None:
            setattr(cell, word.lower(), grade)


def parse_grade(where: str, args: list[str], lineno: int, errors: list[str]) -> Grade | None:
    """Parse `ID POINTS` of a TEST or MANUAL tag."""
    if len(args) != 2:
        errors.append(f"{where} takes an id and points (expected e.g. '#!TAG TEST kl-values 2')")
        return None
    grade_id, points = args
    if not ID_PATTERN.match(grade_id):
        errors.append(
            f"{where}: bad id {grade_id!r} (expected a letter, then letters, digits, - or _)"
        )
        return None
    try:
        value = float(points)
    except ValueError:
        value = float("nan")
    if not value > 0:
        errors.append(f"{where}: points {points!r} (expected a positive number)")
        return None
    return Grade(grade_id, value, lineno)


def parse_body(path: Path, cell: Cell, lines: list[Line], errors: list[str]) -> None:
    """Fill `cell.segments` from its lines, checking the region tags pair up."""
    region: Region | None = None
    for line in lines:
        tag = tag_of(line.text)
        where = f"{path}:{line.lineno}"
        if tag is None:
            (region.body if region else cell.segments).append(line)
        elif tag[0] == "MSG":
            if region is None or region.hidden:
                errors.append(
                    f"{where}: #!MSG outside a solution region (expected it between HWBEGIN and HWEND)"
                )
            else:
                region.hints.append(tag[1])
        else:
            region = parse_region_tag(where, cell, region, line, tag[1], errors)
    if region is not None:
        errors.append(
            f"{path}:{region.begin}: region opened here is still open at the end of the cell "
            f"(expected #!TAG {'HIDDENEND' if region.hidden else 'HWEND'} before line {lines[-1].lineno + 1})"
        )


def parse_region_tag(
    where: str, cell: Cell, region: Region | None, line: Line, words: str, errors: list[str]
) -> Region | None:
    """Apply a region tag to the open region (or None); return the region open after it."""
    word = (words.split() or [""])[0]
    if word in HEADER_WORDS:
        errors.append(
            f"{where}: #!TAG {word} after the first lines of the cell (expected it at the top)"
        )
        return region
    if word not in REGION_WORDS:
        known = ", ".join(sorted(HEADER_WORDS | REGION_WORDS))
        errors.append(f"{where}: unknown tag #!TAG {word} (expected one of {known})")
        return region
    hidden, opening = word.startswith("HIDDEN"), word.endswith("BEGIN")
    if opening and region is not None:
        errors.append(
            f"{where}: #!TAG {word} inside the region opened at line {region.begin} "
            f"(expected #!TAG {'HIDDENEND' if region.hidden else 'HWEND'} first)"
        )
        return None  # read it as the intended close, so one mistake gives one error
    if opening:
        return open_region(where, cell, line, word, hidden, errors)
    if region is None or region.hidden != hidden:
        errors.append(
            f"{where}: #!TAG {word} without a matching #!TAG {word.replace('END', 'BEGIN')}"
        )
        return region
    cell.segments.append(region)
    return None


def open_region(
    where: str, cell: Cell, line: Line, word: str, hidden: bool, errors: list[str]
) -> Region:
    """Open a region, checking it may stand here: hidden tests only in TEST cells, and vice versa.

    A misplaced region is still opened, so that its closing tag gives no second error.
    """
    if hidden and cell.test is None:
        errors.append(
            f"{where}: #!TAG {word} outside a test cell (expected a cell starting with #!TAG TEST)"
        )
    if not hidden and cell.test is not None:
        errors.append(
            f"{where}: #!TAG {word} in a test cell (expected HIDDENBEGIN for hidden tests)"
        )
    indent = line.text[: len(line.text) - len(line.text.lstrip())]
    return Region(indent, line.lineno, hidden)


def check_unique_ids(path: Path, cells: list[Cell], errors: list[str]) -> None:
    """Every TEST and MANUAL id is used once in the template."""
    seen: dict[str, int] = {}
    for cell in cells:
        for grade in (cell.test, cell.manual):
            if grade is None:
                continue
            if grade.id in seen:
                errors.append(
                    f"{path}:{grade.lineno}: id {grade.id!r} already used at line {seen[grade.id]} "
                    "(expected every test id once)"
                )
            seen.setdefault(grade.id, grade.lineno)
        if cell.manual is not None and not cell.has_solution:
            errors.append(
                f"{path}:{cell.lineno}: MANUAL cell without a region (expected its reference answer between HWBEGIN and HWEND)"
            )
