"""Parse a tagged lab template once into a `Template` that every view renders from.

The template is a Jupytext-markdown notebook. Jupytext splits it into cells but keeps no
source line numbers, so each cell is located in the raw text and every line keeps its
template line number: errors read `FILE:LINE: what is wrong (what was expected)`, warnings
`FILE:LINE: warning: what was read (how to silence it)`.

The language is tolerant where a reading is safe (a stray character on a known tag, a
repeated SKIPQUESTEXEC: warnings) and strict where a guess could lose or leak content (a
HWBEGIN inside an open region, a region never closed, a test cell inside a solution: errors).
"""

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path

import jupytext

HEADER_WORDS = {"SKIPQUESTEXEC", "TEST", "MANUAL", "LOCKED"}
REGION_WORDS = {"HWBEGIN", "HWEND", "HIDDENBEGIN", "HIDDENEND"}
KNOWN_WORDS = HEADER_WORDS | REGION_WORDS
ID_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
# A tag line: `#!TAG WORD args` or `#!MSG text`, also commented out once more (`# #!MSG text`),
# the form the course's own stripper reads as a hint.
TAG_LINE = re.compile(r"^\s*(?:#+\s*)?#!(TAG|MSG)\b:?\s*(.*?)\s*$")


class TemplateError(ValueError):
    """One or more errors in a template; `errors` holds every `FILE:LINE: message`."""

    def __init__(self, errors: list[str], warnings: list[str] | None = None):
        super().__init__("\n".join(errors))
        self.errors = errors
        self.warnings = warnings or []


@dataclass
class Line:
    """A line of a cell with its 1-based line number in the template."""

    text: str
    lineno: int


@dataclass
class Region:
    """A solution region (`hidden=False`) or a hidden-test region, with its hints.

    A region that spans cells is one `Region` in the cell where it opens (its hints and its
    stub are there) and a continuation piece in each later cell it covers: a `Region` whose
    `opened_in` is the opening one and whose body holds that cell's lines of the region.
    """

    indent: str
    begin: int
    hidden: bool = False
    hints: list[str] = field(default_factory=list)
    body: list[Line] = field(default_factory=list)
    opened_in: "Region | None" = None

    @property
    def opening(self) -> "Region":
        return self.opened_in or self


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

    @property
    def solution_only(self) -> bool:
        """All the cell holds lies in a region opened in an earlier cell: no student sees it."""
        pieces = [s for s in self.segments if isinstance(s, Region)]
        lines = [s for s in self.segments if isinstance(s, Line)]
        return (
            bool(pieces)
            and all(p.opened_in is not None for p in pieces)
            and not any(line.text.strip() for line in lines)
        )


@dataclass
class Template:
    """A parsed template: the notebook's metadata, its cells and the warnings it gave."""

    path: Path
    metadata: dict
    cells: list[Cell]
    warnings: list[str] = field(default_factory=list)


@dataclass
class Tag:
    """A tag line read: 'TAG' or 'MSG', the canonical word (TAG only) and the rest."""

    kind: str
    word: str
    args: list[str]
    text: str


def tag_of(text: str) -> tuple[str, str] | None:
    """('TAG' or 'MSG', rest of the line) for a tag line, None for an ordinary line."""
    match = TAG_LINE.match(text)
    return (match.group(1), match.group(2)) if match else None


class Report:
    """The errors and warnings of one template, each as `FILE:LINE: ...`."""

    def __init__(self, path: Path):
        self.path = path
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def error(self, lineno: int, message: str) -> None:
        self.errors.append(f"{self.path}:{lineno}: {message}")

    def warn(self, lineno: int, message: str) -> None:
        self.warnings.append(f"{self.path}:{lineno}: warning: {message}")


def canonical_word(raw: str) -> str | None:
    """The known tag word `raw` stands for: itself, or itself without a stray character or
    in upper case (a safe reading); None for an unknown word."""
    if raw in KNOWN_WORDS:
        return raw
    word = re.sub(r"[^A-Z0-9]", "", raw.upper())
    return word if word in KNOWN_WORDS else None


def read_tag(report: Report, line: Line) -> Tag | None:
    """The tag on `line`, its word made canonical; None for an ordinary line or a bad tag.

    A known word with a stray character or in another case is read as that word, with a
    warning; an unknown word is an error that names the closest known word.
    """
    found = tag_of(line.text)
    if found is None:
        return None
    kind, rest = found
    if kind == "MSG":
        return Tag("MSG", "", [], rest)
    raw, *args = rest.split() or [""]
    word = canonical_word(raw)
    if word is not None:
        if word != raw:
            report.warn(
                line.lineno, f"unknown tag #!TAG {raw}: did you mean {word}? (read as {word})"
            )
        return Tag("TAG", word, args, rest)
    known = ", ".join(sorted(KNOWN_WORDS))
    if not raw:
        report.error(line.lineno, f"#!TAG without a word (expected one of {known})")
        return None
    close = difflib.get_close_matches(raw.upper(), sorted(KNOWN_WORDS), n=1)
    guess = f"did you mean {close[0]}? " if close else ""
    report.error(line.lineno, f"unknown tag #!TAG {raw} ({guess}expected one of {known})")
    return None


def read_template(path: Path) -> Template:
    """Parse the template at `path`; raise TemplateError listing every error in the file."""
    text = path.read_text(encoding="utf-8")
    notebook = jupytext.reads(text, fmt="md")
    starts = locate_cells(text, [c.source for c in notebook.cells])
    report = Report(path)
    parser = Parser(report)
    cells = [
        parser.cell(nb_cell.cell_type, nb_cell.source, start, dict(nb_cell.metadata))
        for nb_cell, start in zip(notebook.cells, starts, strict=True)
    ]
    parser.finish()
    check_unique_ids(report, cells)
    if report.errors:
        raise TemplateError(report.errors, report.warnings)
    return Template(path, dict(notebook.metadata), cells, report.warnings)


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


class Parser:
    """Reads cells in order; a solution region may stay open from one cell into the next."""

    def __init__(self, report: Report):
        self.report = report
        self.open: Region | None = None  # the region open at this point of the template
        self.last_line = 0

    def cell(self, kind: str, source: str, start: int, metadata: dict) -> Cell:
        """Parse one cell: header tags, then lines and regions."""
        cell = Cell(kind, start, metadata)
        lines = [Line(t, start + i) for i, t in enumerate(source.split("\n"))]
        self.last_line = lines[-1].lineno
        body = self.header(cell, lines)
        self.enter(cell)
        for line in body:
            self.line(cell, line)
        self.leave(cell)
        return cell

    def header(self, cell: Cell, lines: list[Line]) -> list[Line]:
        """Read the header tags at the top of the cell; return the lines after them."""
        i = 0
        while i < len(lines) and (found := tag_of(lines[i].text)) and found[0] == "TAG":
            if canonical_word((found[1].split() or [""])[0]) not in HEADER_WORDS:
                break  # a region tag or a bad one: the body reads (and reports) it
            tag = read_tag(self.report, lines[i])
            assert tag is not None
            self.apply_header(cell, tag, lines[i].lineno)
            i += 1
        return lines[i:]

    def apply_header(self, cell: Cell, tag: Tag, lineno: int) -> None:
        """Record one header tag on `cell`, checking where it may stand and its arguments."""
        word = tag.word
        if word == "SKIPQUESTEXEC":
            self.skip(cell, lineno, at_top=True)
        elif cell.kind != "code" and word in ("TEST", "LOCKED"):
            self.report.error(lineno, f"#!TAG {word} in a {cell.kind} cell (expected a code cell)")
        elif word == "LOCKED":
            cell.locked = True
        else:
            grade = parse_grade(self.report, word, tag.args, lineno)
            if grade is not None:
                setattr(cell, word.lower(), grade)

    def skip(self, cell: Cell, lineno: int, at_top: bool) -> None:
        """SKIPQUESTEXEC: skipping a cell loses nothing, so every slip here is a warning."""
        if cell.kind != "code":
            self.report.warn(lineno, f"#!TAG SKIPQUESTEXEC in a {cell.kind} cell has no effect")
        elif cell.skip:
            self.report.warn(lineno, "#!TAG SKIPQUESTEXEC repeated in this cell (once is enough)")
        elif not at_top:
            self.report.warn(
                lineno,
                "#!TAG SKIPQUESTEXEC below the first lines of the cell: the cell is skipped "
                "(move it to the top)",
            )
        cell.skip = cell.skip or cell.kind == "code"

    def enter(self, cell: Cell) -> None:
        """Continue an open solution region into this cell, unless the cell may not be in one."""
        region = self.open
        if region is None:
            return
        what = "test" if cell.test else "MANUAL" if cell.manual else "LOCKED" if cell.locked else ""
        if what:
            self.report.error(
                cell.lineno,
                f"a {what} cell inside the solution region opened at line {region.begin} "
                f"(expected #!TAG HWEND before this cell: it would be removed from the student view)",
            )
            self.open = None
            return
        piece = Region(region.indent, cell.lineno, opened_in=region.opening)
        cell.segments.append(piece)
        self.open = piece

    def line(self, cell: Cell, line: Line) -> None:
        """One line of the cell's body: ordinary, a hint, or a region tag."""
        is_tag = tag_of(line.text) is not None
        tag = read_tag(self.report, line) if is_tag else None
        if not is_tag:
            (self.open.body if self.open else cell.segments).append(line)
        elif tag is None:
            return  # a bad tag, already reported
        elif tag.kind == "MSG":
            self.hint(line, tag.text)
        elif tag.word in HEADER_WORDS:
            self.late_header(cell, tag, line.lineno)
        else:
            self.region_tag(cell, line, tag)

    def hint(self, line: Line, text: str) -> None:
        if self.open is None or self.open.hidden:
            self.report.error(
                line.lineno,
                "#!MSG outside a solution region (expected it between HWBEGIN and HWEND)",
            )
        else:
            self.open.opening.hints.append(text)

    def late_header(self, cell: Cell, tag: Tag, lineno: int) -> None:
        if tag.word == "SKIPQUESTEXEC":
            self.skip(cell, lineno, at_top=False)
            return
        self.report.error(
            lineno, f"#!TAG {tag.word} after the first lines of the cell (expected it at the top)"
        )

    def region_tag(self, cell: Cell, line: Line, tag: Tag) -> None:
        """Open or close a region, checking the tags pair up."""
        word, region = tag.word, self.open
        if tag.args:
            self.report.warn(
                line.lineno, f"text after #!TAG {word} is ignored: {' '.join(tag.args)!r}"
            )
        hidden, opening = word.startswith("HIDDEN"), word.endswith("BEGIN")
        if opening and region is not None:
            closing = "HIDDENEND" if region.hidden else "HWEND"
            self.report.error(
                line.lineno,
                f"#!TAG {word} inside the region opened at line {region.opening.begin} "
                f"(expected #!TAG {closing} first)",
            )
            self.close(cell)  # read it as the intended close, so one mistake gives one error
        elif opening:
            self.open_region(cell, line, word, hidden)
        elif region is None or region.hidden != hidden:
            self.report.error(
                line.lineno,
                f"#!TAG {word} without a matching #!TAG {word.replace('END', 'BEGIN')}",
            )
        else:
            self.close(cell)

    def open_region(self, cell: Cell, line: Line, word: str, hidden: bool) -> None:
        """Open a region: hidden tests only in TEST cells, and solutions never there.

        A misplaced region is still opened, so that its closing tag gives no second error.
        """
        if hidden and cell.test is None:
            self.report.error(
                line.lineno,
                f"#!TAG {word} outside a test cell (expected a cell starting with #!TAG TEST)",
            )
        if not hidden and cell.test is not None:
            self.report.error(
                line.lineno,
                f"#!TAG {word} in a test cell (expected HIDDENBEGIN for hidden tests)",
            )
        self.open = Region(leading_space(line.text), line.lineno, hidden)

    def close(self, cell: Cell) -> None:
        """Close the open region: its piece in this cell joins the cell's segments."""
        region = self.open
        if region is not None and region.opened_in is None:
            region.indent = body_indent(region)
            cell.segments.append(region)
        self.open = None

    def leave(self, cell: Cell) -> None:
        """At the end of a cell a solution region may stay open; a hidden one, a MANUAL
        answer or a test cell's may not (grading finds them by their cell)."""
        region = self.open
        if region is None:
            return
        if region.opened_in is None:
            region.indent = body_indent(region)
            cell.segments.append(region)
        if region.hidden or cell.manual or cell.test:
            closing = "HIDDENEND" if region.hidden else "HWEND"
            what = "hidden tests" if region.hidden else "the answer of a graded cell"
            self.report.error(
                region.opening.begin,
                f"region opened here is still open at the end of the cell (expected #!TAG "
                f"{closing} before line {self.last_line + 1}: {what} cannot span cells)",
            )
            self.open = None

    def finish(self) -> None:
        """A region still open at the end of the file is an error where it opened."""
        if self.open is not None:
            self.report.error(
                self.open.opening.begin,
                "region opened here is never closed "
                f"(expected #!TAG HWEND before the end of the file, line {self.last_line + 1})",
            )


def leading_space(text: str) -> str:
    return text[: len(text) - len(text.lstrip())]


def body_indent(region: Region) -> str:
    """Where the region's stub and hints stand: at its first code line's indentation.

    Tags at column 0 inside an indented block are common; the stub must follow the code.
    """
    lines = [line.text for line in region.body if line.text.strip()]
    code = [text for text in lines if not text.lstrip().startswith("#")]
    for text in code or lines:
        return leading_space(text)
    return region.indent


def parse_grade(report: Report, word: str, args: list[str], lineno: int) -> Grade | None:
    """Parse `ID POINTS` of a TEST or MANUAL tag."""
    where = f"#!TAG {word}"
    if len(args) != 2:
        report.error(
            lineno, f"{where} takes an id and points (expected e.g. '#!TAG TEST kl-values 2')"
        )
        return None
    grade_id, points = args
    if not ID_PATTERN.match(grade_id):
        report.error(
            lineno,
            f"{where}: bad id {grade_id!r} (expected a letter, then letters, digits, - or _)",
        )
        return None
    try:
        value = float(points)
    except ValueError:
        value = float("nan")
    if not value > 0:
        report.error(lineno, f"{where}: points {points!r} (expected a positive number)")
        return None
    return Grade(grade_id, value, lineno)


def check_unique_ids(report: Report, cells: list[Cell]) -> None:
    """Every TEST and MANUAL id is used once in the template."""
    seen: dict[str, int] = {}
    for cell in cells:
        for grade in (cell.test, cell.manual):
            if grade is None:
                continue
            if grade.id in seen:
                report.error(
                    grade.lineno,
                    f"id {grade.id!r} already used at line {seen[grade.id]} (expected every test id once)",
                )
            seen.setdefault(grade.id, grade.lineno)
        if cell.manual is not None and not cell.has_solution:
            report.error(
                cell.lineno,
                "MANUAL cell without a region (expected its reference answer between HWBEGIN and HWEND)",
            )
