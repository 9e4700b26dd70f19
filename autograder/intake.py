"""Intake: an LMS download into nbgrader's `submitted/`, a class roster into its gradebook.

`collect` reads the zip an LMS gives an instructor who downloads every submission of an
assignment (or the folder it unpacks to), tells from each file's name whose it is, and copies
each student's one notebook to `submitted/STUDENT/LAB/LAB.ipynb` with nbgrader's
`timestamp.txt` beside it. Nothing is extracted by the archive's own names and nothing is
guessed: a file it cannot place is refused with the reason, and every file of the download gets
one line in the report and in `DIR/collect.log`.

The two layouts, as the LMSs' own code writes them:

- Moodle (`mod/assign/locallib.php`, `download_submissions`): `FULL NAME_PARTICIPANT_` then
  `assignsubmission_file_`, then `/` and the student's path (one folder per student, the
  default since Moodle 3.1) or directly the file name (flat). Underscores in the name become
  spaces. PARTICIPANT is the assignment's participant number (`get_uniqueid_for_user`, a row of
  `assign_user_mapping` allocated per assignment), not a user id: the same student has another
  number in the next assignment, so a Moodle file is matched to the roster by its name.
- Canvas (`lib/content_zipper.rb`, `get_filename`): `sortablename[_LATE]_USERID_` then
  `ATTACHMENTID_FILENAME`; the sortable name ("Doe, Jane") is lower-cased with every non-word
  character removed ("doejane"), `LATE` marks a submission after the due date, and anonymous
  grading writes `anon_ANONYMOUSID` instead of name and user id. USERID is Canvas's user id
  (the "ID" column of its gradebook export).

`roster` fills nbgrader's student table from a CSV in the columns of `nbgrader db student
import` (id, first_name, last_name, email) through nbgrader's Gradebook API, so `nbgrader
export` writes every student's name into grades.csv.
"""

import contextlib
import csv
import json
import os
import re
import sys
import warnings
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import nbformat

from autograder import course as course_

LOG = Path("collect.log")
# What `nbgrader submit` writes into timestamp.txt (nbgrader.exchange.abc.Exchange's
# timestamp_format, in UTC); nbgrader's parse_utc reads it back.
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S.%f %Z"

MOODLE = re.compile(r"(?:^|/)(?P<name>[^/_]+)_(?P<participant>\d+)_assignsubmission_file_")
CANVAS = re.compile(
    r"(?:^|/)(?:(?P<name>\w+?)_)??(?:(?P<late>LATE)_)?"
    r"(?P<student>\d+|anon_[0-9A-Za-z]+)_(?P<attachment>\d+)_[^/]+$"
)
LAYOUTS = (("Moodle", MOODLE), ("Canvas", CANVAS))
LAYOUT_HINT = (
    "expected Moodle's 'FULL NAME_PARTICIPANT_assignsubmission_file_/FILE' or Canvas's "
    "'name_USERID_ATTACHMENTID_FILE'; for another layout give --pattern with a named group "
    "'student' (or 'name')"
)
MACOS_METADATA = re.compile(r"(?:^|/)(?:__MACOSX/|\.DS_Store$)")
ROSTER_FIELDS = ("id", "first_name", "last_name", "email", "lms_user_id")


class IntakeError(Exception):
    """Input that stops the whole command: nothing was written."""


class Refused(Exception):
    """One file that is not imported, and why."""


# ---------------------------------------------------------------- the gradebook


@contextlib.contextmanager
def gradebook(course: Path) -> Iterator:
    """nbgrader's gradebook of the course, created if it does not exist yet."""
    from nbgrader.api import Gradebook

    # A new gradebook runs `alembic` from PATH (nbgrader.api.get_alembic_version): put this
    # environment's scripts first, as course.nbgrader does for nbgrader's own commands.
    path = os.environ.get("PATH", "")
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{path}"
    try:
        url = f"sqlite:///{(course / 'gradebook.db').resolve()}"
        with Gradebook(url, course_.COURSE_ID) as gb:
            yield gb
    finally:
        os.environ["PATH"] = path


def name_key(name: str) -> str:
    """A name as both LMSs can write it: case, spaces and punctuation ignored."""
    return "".join(ch for ch in name.casefold() if ch.isalnum())


@dataclass(frozen=True)
class Roster:
    """The students of nbgrader's gradebook: their ids, and their ids by name."""

    ids: frozenset[str]
    by_name: dict[str, tuple[str, ...]]

    @classmethod
    def of(cls, students: list) -> "Roster":
        by_name: dict[str, set[str]] = {}
        for s in students:
            first, last = s.first_name or "", s.last_name or ""
            # Moodle writes "First Last", Canvas's sortable name "Last, First"
            for key in {name_key(first + last), name_key(last + first)} - {""}:
                by_name.setdefault(key, set()).add(s.id)
        return cls(
            frozenset(s.id for s in students),
            {k: tuple(sorted(v)) for k, v in by_name.items()},
        )


def load_roster(course: Path) -> Roster | None:
    """The gradebook's students, or None when it has none (every student is then new)."""
    if not (course / "gradebook.db").is_file():
        return None
    with gradebook(course) as gb:
        students = list(gb.students)
    return Roster.of(students) if students else None


# ---------------------------------------------------------------- whose file it is


@dataclass(frozen=True)
class Found:
    """What a file's name says: whose it is, and whether the LMS marked it late."""

    layout: str
    student: str | None  # the id the roster knows, where the name carries one
    name: str | None  # the student's name as the LMS wrote it
    late: bool = False
    timestamp: str | None = None  # a `timestamp` group of --pattern


def compile_pattern(text: str) -> tuple[tuple[str, re.Pattern], ...]:
    """--pattern as the one layout to read; it must name the student (id or name)."""
    try:
        pattern = re.compile(text)
    except re.error as exc:
        raise IntakeError(f"--pattern {text!r} is not a regular expression: {exc}") from None
    if not {"student", "name"} & set(pattern.groupindex):
        raise IntakeError(
            f"--pattern {text!r} has no named group 'student' (or 'name'): e.g. "
            r"'(?P<student>\w+)_(?P<late>LATE_)?' followed by the rest of the file name"
        )
    return (("--pattern", pattern),)


def match_name(path: str, layouts: tuple[tuple[str, re.Pattern], ...]) -> Found | None:
    """What the first layout whose pattern occurs in the path says of the file; None if none."""
    for layout, pattern in layouts:
        m = pattern.search(path)
        if m:
            groups = m.groupdict()
            return Found(
                layout,
                groups.get("student") or None,
                groups.get("name") or None,
                bool(groups.get("late")),
                groups.get("timestamp") or None,
            )
    return None


def slug(name: str) -> str:
    """A folder name made of a student's name ("Jane Doe" -> "jane-doe")."""
    return re.sub(r"[^0-9a-z]+", "-", name.casefold()).strip("-")


def check_folder_name(student: str) -> None:
    """A student id becomes a folder of submitted/: refuse one that cannot be that folder."""
    if (
        not student
        or student in (".", "..")
        or student.startswith(".")
        or re.search(r"[/\\\x00-\x1f]", student)
    ):
        raise Refused(
            f"the student id {student!r} cannot be a folder of submitted/ (expected no '/', "
            "no leading '.', no control character)"
        )


def student_of(found: Found, roster: Roster | None) -> tuple[str, str]:
    """The nbgrader id of a file's student and how it was found; Refused if it cannot be."""
    if not (found.student or found.name):
        raise Refused("the file name gives no student id or name (an empty group of --pattern)")
    if roster is None:
        student = found.student or slug(found.name or "")
        how = "" if found.student else f"id made of the name {found.name!r}"
    elif found.student in roster.ids:
        student, how = found.student, ""
    else:
        ids = roster.by_name.get(name_key(found.name)) if found.name else None
        if ids and len(ids) > 1:
            raise Refused(
                f"the name {found.name!r} fits {len(ids)} students of the roster "
                f"({', '.join(ids)}): give --pattern with the student's id"
            )
        if not ids:
            said = [
                f"{what} {value!r}"
                for what, value in (("id", found.student), ("name", found.name))
                if value
            ]
            which = (
                f"neither {said[0]} nor {said[1]} is" if len(said) == 2 else f"the {said[0]} is not"
            )
            raise Refused(
                f"unknown student: {which} in the gradebook's roster "
                f"({len(roster.ids)} students); add the student (autograder roster, or "
                "nbgrader db student add) and collect again"
            )
        student, how = ids[0], f"matched by name {found.name!r}"
    check_folder_name(student)
    return student, how


# ---------------------------------------------------------------- the download


@dataclass(frozen=True)
class Member:
    """A file of the download: its path inside it, its time there, and its bytes."""

    path: str
    mtime: datetime | None
    read: Callable[[], bytes]


def members(source: Path, stack: contextlib.ExitStack) -> list[Member]:
    """Every file of the download (a zip or a folder), in path order."""
    if source.is_dir():
        return [
            Member(p.relative_to(source).as_posix(), file_time(p), p.read_bytes)
            for p in sorted(source.rglob("*"))
            if p.is_file()
        ]
    if not source.is_file():
        raise IntakeError(f"{source}: no such file or folder (expected the LMS's zip or a folder)")
    try:
        archive = stack.enter_context(zipfile.ZipFile(source))
    except zipfile.BadZipFile as exc:
        raise IntakeError(f"{source}: not a zip file ({exc}); expected the LMS's zip") from None
    return [
        Member(
            info.filename.replace("\\", "/"),
            zip_time(info),
            lambda info=info: archive.read(info),
        )
        for info in sorted(archive.infolist(), key=lambda i: i.filename)
        if not info.is_dir()
    ]


def file_time(path: Path) -> datetime:
    return datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)


def zip_time(info: zipfile.ZipInfo) -> datetime | None:
    """A zip member's time (zip stores local time without a zone: read as this machine's)."""
    try:
        return datetime(*info.date_time).astimezone(timezone.utc)
    except ValueError:
        return None


def read_member(member: Member) -> bytes:
    """A file's bytes; Refused if the zip cannot give them (a bad CRC, an encrypted member)."""
    try:
        return member.read()
    except (zipfile.BadZipFile, RuntimeError, OSError) as exc:
        raise Refused(f"cannot be read from the download: {exc}") from None


def check_notebook(data: bytes) -> None:
    """Refuse bytes that are not a notebook nbgrader can read."""
    try:
        content = json.loads(data)
    except json.JSONDecodeError as exc:
        raise Refused(
            f"not a notebook: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    except UnicodeDecodeError:
        raise Refused("not a notebook: not UTF-8 text") from None
    if not isinstance(content, dict):
        raise Refused(f"not a notebook: the JSON is a {type(content).__name__}, not an object")
    try:
        with warnings.catch_warnings():  # e.g. cells without ids: nbformat adds them, warning
            warnings.simplefilter("ignore")
            nbformat.reads(data.decode("utf-8"), as_version=4)
    except Exception as exc:  # nbformat raises ValidationError, NBFormatError, KeyError, ...
        raise Refused(f"not a notebook nbformat can read: {exc}") from None


# ---------------------------------------------------------------- the report


@dataclass
class Entry:
    """What became of one file of the download."""

    path: str
    status: str  # "imported", "replaced", "skipped" or "refused"
    student: str | None = None
    reason: str = ""
    late: str = ""  # why it counts as late, if it does

    def line(self) -> str:
        who = f" [{self.student}]" if self.student else ""
        why = f": {self.reason}" if self.reason else ""
        late = f" LATE: {self.late}" if self.late else ""
        return f"{self.status:<8} {self.path}{who}{why}{late}"


@dataclass
class Report:
    """Every file of one download and what became of it, with notes on the whole run."""

    source: Path
    lab: str
    entries: list[Entry] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for e in self.entries if e.status == status)

    @property
    def refused(self) -> list[Entry]:
        return [e for e in self.entries if e.status == "refused"]

    def summary(self) -> str:
        late = sum(1 for e in self.entries if e.late and e.status in ("imported", "replaced"))
        return (
            f"{len(self.entries)} file(s) in {self.source} for {self.lab}: "
            f"{self.count('imported')} imported, {self.count('replaced')} replaced, "
            f"{late} of them late, {self.count('skipped')} skipped, "
            f"{len(self.refused)} refused"
        )

    def lines(self) -> list[str]:
        entries = sorted(self.entries, key=lambda e: e.path)
        return [e.line() for e in entries] + self.notes + [self.summary()]


# ---------------------------------------------------------------- collect


def parse_deadline(text: str) -> datetime:
    """An ISO 8601 time with its zone (a deadline without one would be read in any zone)."""
    try:
        deadline = datetime.fromisoformat(text)
    except ValueError:
        raise IntakeError(
            f"--deadline {text!r} is not an ISO 8601 time (expected e.g. 2025-03-01T23:59+01:00)"
        ) from None
    if deadline.tzinfo is None:
        raise IntakeError(
            f"--deadline {text!r} has no time zone (expected e.g. {text}+01:00 or {text}Z)"
        )
    return deadline.astimezone(timezone.utc)


def check_released(course: Path, lab: str) -> None:
    if not (course / "release" / lab / f"{lab}.ipynb").is_file():
        raise IntakeError(
            f"{lab} is not released in {course} (no release/{lab}/{lab}.ipynb): "
            "release it first (autograder release, make release)"
        )


def collect(
    source: Path,
    lab: str,
    course: Path,
    pattern: str | None = None,
    force: bool = False,
    deadline: datetime | None = None,
) -> Report:
    """Import a download's notebooks into submitted/STUDENT/LAB/LAB.ipynb; report every file."""
    check_released(course, lab)
    layouts = compile_pattern(pattern) if pattern else LAYOUTS
    roster = load_roster(course)
    report = Report(source, lab)
    with contextlib.ExitStack() as stack:
        by_student: dict[str, list[tuple[Member, Found, str]]] = {}
        for member in members(source, stack):
            if MACOS_METADATA.search(member.path):
                report.entries.append(Entry(member.path, "skipped", reason="macOS metadata"))
                continue
            try:
                found, student, how = place(member.path, layouts, roster)
            except Refused as exc:
                report.entries.append(Entry(member.path, "refused", reason=str(exc)))
                continue
            by_student.setdefault(student, []).append((member, found, how))
        for student, files in by_student.items():
            if len(files) > 1:
                report.entries += duplicates(student, [m for m, _, _ in files])
            else:
                member, found, how = files[0]
                report.entries.append(
                    import_one(course, lab, member, found, student, how, force, deadline)
                )
    if deadline is not None:
        report.notes.append(set_duedate(course, lab, deadline))
    write_log(course, report)
    return report


def place(
    path: str, layouts: tuple[tuple[str, re.Pattern], ...], roster: Roster | None
) -> tuple[Found, str, str]:
    """Whose notebook a file is (its name's reading, the student id, how it was found)."""
    suffix = Path(path).suffix
    if suffix.lower() != ".ipynb":
        kind = f"a {suffix} file" if suffix else "a file without extension"
        raise Refused(f"not a notebook ({kind}): only .ipynb files are collected")
    found = match_name(path, layouts)
    if found is None:
        if layouts is LAYOUTS:
            raise Refused(f"the file name fits no LMS layout ({LAYOUT_HINT})")
        raise Refused(f"the file name does not match --pattern {layouts[0][1].pattern!r}")
    student, how = student_of(found, roster)
    return found, student, how


def duplicates(student: str, files: list[Member]) -> list[Entry]:
    """Two notebooks of one student: neither is imported (which one counts is not ours to say)."""
    names = ", ".join(m.path for m in files)
    why = (
        f"one of {len(files)} notebooks of {student} in this download ({names}): neither "
        "imported; keep the one to grade and collect again"
    )
    return [Entry(m.path, "refused", student, why) for m in files]


def import_one(
    course: Path,
    lab: str,
    member: Member,
    found: Found,
    student: str,
    how: str,
    force: bool,
    deadline: datetime | None,
) -> Entry:
    """One student's notebook into submitted/, with its timestamp; never over another silently."""
    try:
        data = read_member(member)
        check_notebook(data)
        stamp = submission_time(member, found)
    except Refused as exc:
        return Entry(member.path, "refused", student, str(exc))
    folder = course / "submitted" / student / lab
    target = folder / f"{lab}.ipynb"
    shown = target.relative_to(course).as_posix()
    status = "imported"
    if target.is_file():
        if target.read_bytes() == data:
            return Entry(member.path, "skipped", student, f"identical to {shown}")
        if not force:
            return Entry(
                member.path,
                "refused",
                student,
                f"a different notebook is already at {shown}: not overwritten (--force "
                "replaces it)",
            )
        status = "replaced"
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(target, data)
    if stamp is not None:
        write_atomic(folder / "timestamp.txt", stamp.strftime(TIMESTAMP_FORMAT).encode())
    reason = ", ".join(
        part
        for part in (
            f"to {shown}",
            how,
            "regraded by autograde --changed" if status == "replaced" else "",
        )
        if part
    )
    return Entry(member.path, status, student, reason, lateness(found, stamp, deadline))


def submission_time(member: Member, found: Found) -> datetime | None:
    """When the file was submitted, as far as the download says: a `timestamp` group of
    --pattern, else the file's time in the zip or folder."""
    if found.timestamp is None:
        return member.mtime
    from nbgrader.utils import parse_utc

    try:
        return parse_utc(found.timestamp).replace(tzinfo=timezone.utc)
    except (ValueError, OverflowError):
        raise Refused(f"the timestamp {found.timestamp!r} in the file name is not a time") from None


def lateness(found: Found, stamp: datetime | None, deadline: datetime | None) -> str:
    """Why a submission counts as late ("" if it does not)."""
    reasons = [f"marked late by {found.layout}"] if found.late else []
    if deadline is not None and stamp is None:
        reasons.append("its time is unknown (the zip holds none)")
    elif deadline is not None and stamp > deadline:
        reasons.append(
            f"{stamp:%Y-%m-%d %H:%M} UTC, {duration(stamp - deadline)} after the deadline"
        )
    return "; ".join(reasons)


def duration(delta) -> str:
    minutes = int(delta.total_seconds() // 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    parts = [f"{days} d"] * bool(days) + [f"{hours} h"] * bool(hours) + [f"{minutes} min"]
    return " ".join(parts)


def write_atomic(path: Path, data: bytes) -> None:
    """Write a file whole or not at all (a crash never leaves half a notebook)."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def set_duedate(course: Path, lab: str, deadline: datetime) -> str:
    """The deadline as the lab's due date in nbgrader's gradebook (nbgrader's late flag and
    penalties compare timestamp.txt with it)."""
    from nbgrader.api import MissingEntry

    with gradebook(course) as gb:
        try:
            before = gb.find_assignment(lab).duedate
        except MissingEntry:
            before = None
        gb.update_or_create_assignment(lab, duedate=deadline)
    after = f"{deadline:%Y-%m-%d %H:%M:%S} UTC"
    was = "none" if before is None else f"{before:%Y-%m-%d %H:%M:%S} UTC"
    return f"due date of {lab} in the gradebook: {after} (was {was})"


def write_log(course: Path, report: Report) -> None:
    """Append the run's report to DIR/collect.log."""
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    header = f"== {now} collect {report.source} --lab {report.lab}"
    with open(course / LOG, "a") as log:
        log.write("\n".join([header, *report.lines()]) + "\n")


# ---------------------------------------------------------------- roster


@dataclass
class RosterReport:
    """What a roster CSV did to the gradebook's student table."""

    path: Path
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # one per bad row (or pair of rows)
    dropped: int = 0  # rows not imported
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [
            *self.problems,
            *self.notes,
            f"{self.path}: {len(self.added)} student(s) added, {len(self.updated)} updated, "
            f"{len(self.unchanged)} unchanged, {self.dropped} row(s) not imported",
        ]


def parse_columns(specs: list[str]) -> dict[str, str]:
    """--column FIELD=HEADER options as {field: header}."""
    columns = {}
    for spec in specs:
        name, sep, header = spec.partition("=")
        if not sep or name not in ROSTER_FIELDS or not header:
            raise IntakeError(
                f"--column {spec!r}: expected FIELD=HEADER with FIELD one of "
                f"{', '.join(ROSTER_FIELDS)}"
            )
        columns[name] = header
    return columns


def read_rows(path: Path, columns: dict[str, str], report: RosterReport) -> dict[str, dict]:
    """The CSV's good rows as {id: fields}; each bad row is a problem with its line."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # Excel's "CSV UTF-8" starts with a BOM
    except FileNotFoundError:
        raise IntakeError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise IntakeError(f"{path}: not UTF-8 text (save it as CSV UTF-8)") from None
    first = text.splitlines()[0] if text.strip() else ""
    try:
        dialect = csv.Sniffer().sniff(first, delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(text.splitlines(keepends=True), dialect)
    header = next(reader, [])
    where = header_positions(path, header, columns)
    if unused := [h for i, h in enumerate(header) if i not in where.values()]:
        report.notes.append(f"columns not used: {', '.join(unused)}")
    if missing := [f for f in ROSTER_FIELDS[1:4] if f not in where]:
        report.notes.append(f"no column for {', '.join(missing)}: left empty in the gradebook")
    rows: dict[str, dict] = {}
    first_line: dict[str, int] = {}
    line = reader.line_num + 1
    for values in reader:
        start, line = line, reader.line_num + 1
        if not any(v.strip() for v in values):
            continue
        try:
            fields = row_fields(values, header, where)
        except Refused as exc:
            report.problems.append(f"{path}:{start}: {exc}: row not imported")
            report.dropped += 1
            continue
        sid = fields["id"]
        if sid in first_line:
            report.problems.append(
                f"{path}:{start}: student id {sid!r} is also on line {first_line[sid]}: "
                "neither row imported"
            )
            report.dropped += 1 + (rows.pop(sid, None) is not None)
            continue
        first_line[sid] = start
        rows[sid] = fields
    return rows


def header_positions(path: Path, header: list[str], columns: dict[str, str]) -> dict[str, int]:
    """Where each field's column is (headers compared without case and outer spaces)."""
    index = {h.strip().casefold(): i for i, h in enumerate(header)}
    where = {}
    for name in ROSTER_FIELDS:
        wanted = columns.get(name, name)
        if wanted.strip().casefold() in index:
            where[name] = index[wanted.strip().casefold()]
    if "id" not in where:
        raise IntakeError(
            f"{path}:1: no column {columns.get('id', 'id')!r} for the student id in the header "
            f"({', '.join(header) or 'empty'}); name it with --column id=HEADER"
        )
    return where


def row_fields(values: list[str], header: list[str], where: dict[str, int]) -> dict:
    """One row's fields; Refused if it cannot be a student of the gradebook."""
    if len(values) > len(header):
        raise Refused(f"{len(values)} values for {len(header)} columns")
    fields = {}
    for name, i in where.items():
        value = values[i].strip() if i < len(values) else ""
        if "," in value or "\n" in value:
            # nbgrader's CSV export writes fields unquoted: a comma would shift the columns
            raise Refused(
                f"{name} {value!r} holds a comma or line break, which nbgrader export does not quote"
            )
        fields[name] = value or None
    if not fields["id"]:
        raise Refused("no student id")
    check_folder_name(fields["id"])
    return fields


def load_roster_csv(
    course: Path, path: Path, columns: dict[str, str] | None = None
) -> RosterReport:
    """Put the CSV's students into nbgrader's gradebook (update_or_create_student)."""
    report = RosterReport(path)
    rows = read_rows(path, columns or {}, report)
    course.mkdir(parents=True, exist_ok=True)
    from nbgrader.api import MissingEntry

    with gradebook(course) as gb:
        for sid, fields in rows.items():
            details = {k: v for k, v in fields.items() if k != "id"}
            try:
                student = gb.find_student(sid)
            except MissingEntry:
                report.added.append(sid)
            else:
                same = all(getattr(student, k) == v for k, v in details.items())
                (report.unchanged if same else report.updated).append(sid)
            gb.update_or_create_student(sid, **details)
        others = sorted(s.id for s in gb.students if s.id not in rows)
    if others:
        report.notes.append(f"in the gradebook, not in this CSV (kept): {', '.join(others)}")
    return report
