"""Intake and roster: an LMS download into submitted/, a CSV into nbgrader's student table, and
manual grades from the gradebook into results.json and grades.csv.

The fast tests build small downloads by hand; the slow one grades a class of 6 on the test lab.
"""

import contextlib
import csv
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest
from nbgrader.utils import parse_utc

from autograder import cli, intake, manual
from tests.conftest import ROOT

LAB = "mini"
MOODLE_HINT = intake.LAYOUT_HINT
ROSTER = [  # id, first, last, email
    ("s1", "Jane", "Doe", "jane@uni.example"),
    ("s2", "John", "Smith", "john@uni.example"),
    ("1001", "Ada", "Lovelace", None),
    ("s4", "Sam", "Lee", None),
    ("s5", "Sam", "Lee", None),
]


def notebook(text: str) -> bytes:
    """A small notebook whose one cell holds `text` (different texts, different bytes)."""
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_code_cell(text, id="answer"))  # a fixed id: same bytes
    return nbformat.writes(nb).encode()


def write_zip(path: Path, files: dict[str, bytes], times: dict[str, tuple] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, (times or {}).get(name, (2025, 3, 1, 12, 0, 0)))
            z.writestr(info, data)
    return path


def submitted(course: Path, student: str) -> Path:
    return course / "submitted" / student / LAB / f"{LAB}.ipynb"


def submitted_files(course: Path) -> list[str]:
    root = course / "submitted"
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def empty_db(tmp_path_factory) -> Path:
    """An empty gradebook to copy: a new one takes seconds (alembic runs)."""
    course = tmp_path_factory.mktemp("empty")
    with intake.gradebook(course):
        pass
    return course / "gradebook.db"


def with_gradebook(course: Path, db: Path) -> Path:
    course.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(db, course / "gradebook.db")
    return course


@pytest.fixture(scope="module")
def roster_db(tmp_path_factory, empty_db) -> Path:
    """A gradebook with the roster above."""
    course = with_gradebook(tmp_path_factory.mktemp("roster"), empty_db)
    with intake.gradebook(course) as gb:
        for sid, first, last, email in ROSTER:
            gb.update_or_create_student(sid, first_name=first, last_name=last, email=email)
    return course / "gradebook.db"


@pytest.fixture
def course(tmp_path: Path) -> Path:
    """A course with the lab released and no gradebook (so no roster)."""
    course = tmp_path / "course"
    (course / "release" / LAB).mkdir(parents=True)
    (course / "release" / LAB / f"{LAB}.ipynb").write_bytes(notebook("release"))
    return course


@pytest.fixture
def with_roster(course: Path, roster_db: Path) -> Path:
    shutil.copyfile(roster_db, course / "gradebook.db")
    return course


def by_path(report: intake.Report) -> dict[str, tuple[str, str | None, str, str]]:
    return {e.path: (e.status, e.student, e.reason, e.late) for e in report.entries}


# ---------------------------------------------------------------- file names


@pytest.mark.parametrize(
    "path, layout, student, name, late",
    [
        # Moodle: one folder per student (the default since 3.1), or flat file names
        ("Jane Doe_123456_assignsubmission_file_/lab.ipynb", "Moodle", None, "Jane Doe", False),
        ("Jane Doe_123456_assignsubmission_file_lab.ipynb", "Moodle", None, "Jane Doe", False),
        ("dl/Jane Doe_7_assignsubmission_file_/sub/x.ipynb", "Moodle", None, "Jane Doe", False),
        ("José García_9_assignsubmission_file_/lab.ipynb", "Moodle", None, "José García", False),
        # Canvas: sortablename[_LATE]_USERID_ATTACHMENTID_FILE, anon_ID when anonymous
        ("doejane_123456_7890123_lab.ipynb", "Canvas", "123456", "doejane", False),
        ("doejane_LATE_123456_7890123_lab.ipynb", "Canvas", "123456", "doejane", True),
        ("doejane_123456_7890123_lab_v2_final.ipynb", "Canvas", "123456", "doejane", False),
        ("anon_x7Kp2_7890123_lab.ipynb", "Canvas", "anon_x7Kp2", None, False),
        ("LATE_anon_x7Kp2_7890123_lab.ipynb", "Canvas", "anon_x7Kp2", None, True),
    ],
)
def test_the_default_layouts_read_moodle_and_canvas_names(path, layout, student, name, late):
    found = intake.match_name(path, intake.LAYOUTS)
    assert (found.layout, found.student, found.name, found.late) == (layout, student, name, late)


@pytest.mark.parametrize(
    "path",
    ["lab.ipynb", "smithjohn_12_lab.ipynb", "Jane Doe_assignsubmission_file_/lab.ipynb"],
)
def test_names_of_no_layout_are_not_read(path):
    assert intake.match_name(path, intake.LAYOUTS) is None


def test_a_pattern_replaces_the_layouts():
    layouts = intake.compile_pattern(r"^(?P<student>[a-z]+)-(?P<late>late-)?lab")
    assert intake.match_name("ada-late-lab.ipynb", layouts) == intake.Found(
        "--pattern", "ada", None, True
    )
    assert intake.match_name("doejane_1_2_lab.ipynb", layouts) is None


def test_a_pattern_must_name_the_student_and_parse():
    with pytest.raises(intake.IntakeError) as exc:
        intake.compile_pattern(r"(\w+)_lab")
    assert str(exc.value) == (
        r"--pattern '(\\w+)_lab' has no named group 'student' (or 'name'): e.g. "
        r"'(?P<student>\w+)_(?P<late>LATE_)?' followed by the rest of the file name"
    )
    with pytest.raises(intake.IntakeError) as exc:
        intake.compile_pattern("(?P<student>")
    assert str(exc.value).startswith("--pattern '(?P<student>' is not a regular expression: ")


# ---------------------------------------------------------------- collect


def test_a_download_is_imported_with_nbgrader_timestamps(course, tmp_path):
    files = {
        "Jane Doe_881_assignsubmission_file_/my lab.ipynb": notebook("jane"),
        "doejohn_1002_555_mini.ipynb": notebook("john"),
    }
    download = write_zip(
        tmp_path / "dl.zip", files, {"doejohn_1002_555_mini.ipynb": (2025, 3, 2, 9, 30, 0)}
    )
    report = intake.collect(download, LAB, course)
    assert by_path(report) == {
        "Jane Doe_881_assignsubmission_file_/my lab.ipynb": (
            "imported",
            "jane-doe",
            "to submitted/jane-doe/mini/mini.ipynb, id made of the name 'Jane Doe'",
            "",
        ),
        "doejohn_1002_555_mini.ipynb": (
            "imported",
            "1002",
            "to submitted/1002/mini/mini.ipynb",
            "",
        ),
    }
    assert submitted(course, "jane-doe").read_bytes() == notebook("jane")  # the bytes as sent
    assert submitted(course, "1002").read_bytes() == notebook("john")
    # nbgrader submit's format, which nbgrader reads back (parse_utc: naive UTC)
    stamp = (course / "submitted" / "1002" / LAB / "timestamp.txt").read_text()
    expected = datetime(2025, 3, 2, 9, 30).astimezone(timezone.utc)
    assert stamp == expected.strftime("%Y-%m-%d %H:%M:%S.%f UTC")
    assert parse_utc(stamp) == expected.replace(tzinfo=None)
    assert submitted_files(course) == [
        "1002/mini/mini.ipynb",
        "1002/mini/timestamp.txt",
        "jane-doe/mini/mini.ipynb",
        "jane-doe/mini/timestamp.txt",
    ]
    assert report.summary() == (
        f"2 file(s) in {download} for mini: 2 imported, 0 replaced, 0 of them late, "
        "0 skipped, 0 refused"
    )


def test_a_folder_is_read_like_its_zip(course, tmp_path):
    folder = tmp_path / "unpacked" / "Jane Doe_881_assignsubmission_file_"
    folder.mkdir(parents=True)
    (folder / "lab.ipynb").write_bytes(notebook("jane"))
    report = intake.collect(tmp_path / "unpacked", LAB, course)
    assert [(e.status, e.student) for e in report.entries] == [("imported", "jane-doe")]
    assert submitted(course, "jane-doe").read_bytes() == notebook("jane")


def test_every_bad_file_is_refused_with_its_reason_and_nothing_else_is_lost(with_roster, tmp_path):
    course = with_roster
    files = {
        "Jane Doe_1_assignsubmission_file_/lab.ipynb": notebook("jane"),
        "Jane Doe_1_assignsubmission_file_/screenshot.png": b"\x89PNG",
        "Jane Doe_1_assignsubmission_onlinetext_/onlinetext.html": b"<p>see file</p>",
        "John Smith_2_assignsubmission_file_/lab.ipynb": b'{"cells": [',
        "Ada Lovelace_3_assignsubmission_file_/lab.ipynb": b"[1, 2]",
        "Ada Lovelace_3_assignsubmission_file_/lab (1).ipynb": b'{"nbformat": 4}',
        "Grace Hopper_4_assignsubmission_file_/lab.ipynb": notebook("grace"),
        "Sam Lee_5_assignsubmission_file_/lab.ipynb": notebook("sam"),
        "notes.ipynb": notebook("who?"),
        "__MACOSX/._notes.ipynb": b"\x00\x05",
    }
    download = write_zip(tmp_path / "dl.zip", files)
    report = intake.collect(download, LAB, course)
    ada = (
        "one of 2 notebooks of 1001 in this download (Ada Lovelace_3_assignsubmission_file_/lab "
        "(1).ipynb, Ada Lovelace_3_assignsubmission_file_/lab.ipynb): neither imported; keep "
        "the one to grade and collect again"
    )
    assert by_path(report) == {
        "Jane Doe_1_assignsubmission_file_/lab.ipynb": (
            "imported",
            "s1",
            "to submitted/s1/mini/mini.ipynb, matched by name 'Jane Doe'",
            "",
        ),
        "Jane Doe_1_assignsubmission_file_/screenshot.png": (
            "refused",
            None,
            "not a notebook (a .png file): only .ipynb files are collected",
            "",
        ),
        "Jane Doe_1_assignsubmission_onlinetext_/onlinetext.html": (
            "refused",
            None,
            "not a notebook (a .html file): only .ipynb files are collected",
            "",
        ),
        "John Smith_2_assignsubmission_file_/lab.ipynb": (
            "refused",
            "s2",
            "not a notebook: not valid JSON (Expecting value at line 1 column 12)",
            "",
        ),
        "Ada Lovelace_3_assignsubmission_file_/lab.ipynb": ("refused", "1001", ada, ""),
        "Ada Lovelace_3_assignsubmission_file_/lab (1).ipynb": ("refused", "1001", ada, ""),
        "Grace Hopper_4_assignsubmission_file_/lab.ipynb": (
            "refused",
            None,
            "unknown student: the name 'Grace Hopper' is not in the gradebook's roster "
            "(5 students); add the student (autograder roster, or nbgrader db student add) "
            "and collect again",
            "",
        ),
        "Sam Lee_5_assignsubmission_file_/lab.ipynb": (
            "refused",
            None,
            "the name 'Sam Lee' fits 2 students of the roster (s4, s5): give --pattern with "
            "the student's id",
            "",
        ),
        "notes.ipynb": ("refused", None, f"the file name fits no LMS layout ({MOODLE_HINT})", ""),
        "__MACOSX/._notes.ipynb": ("skipped", None, "macOS metadata", ""),
    }
    assert submitted_files(course) == ["s1/mini/mini.ipynb", "s1/mini/timestamp.txt"]
    log = (course / "collect.log").read_text()
    assert all(path in log for path in files)  # every file of the zip has its line
    assert log.rstrip().endswith(
        "10 file(s) in "
        f"{download} for mini: 1 imported, 0 replaced, 0 of them late, 1 skipped, 8 refused"
    )


def test_a_notebook_nbformat_cannot_read_is_refused(course, tmp_path):
    files = {
        "list_1_2_lab.ipynb": b"[]",
        "nocells_3_4_lab.ipynb": b'{"nbformat": 4, "nbformat_minor": 5, "metadata": {}}',
        "latin_5_6_lab.ipynb": '{"x": "é"}'.encode("latin-1"),
    }
    report = intake.collect(write_zip(tmp_path / "dl.zip", files), LAB, course)
    assert {e.path: e.reason for e in report.entries} == {
        "list_1_2_lab.ipynb": "not a notebook: the JSON is a list, not an object",
        "nocells_3_4_lab.ipynb": "not a notebook nbformat can read: The notebook is invalid "
        "and is missing an expected key: cells",
        "latin_5_6_lab.ipynb": "not a notebook: not UTF-8 text",
    }
    assert not (course / "submitted").exists()


def test_a_corrupted_member_is_refused_and_the_others_imported(course, tmp_path):
    files = {"doejane_1_9_lab.ipynb": notebook("jane"), "smithjohn_2_9_lab.ipynb": notebook("jo")}
    download = write_zip(tmp_path / "dl.zip", files)  # stored: the bytes are in the file as is
    raw = download.read_bytes()
    at = raw.index(b'"jo"')
    download.write_bytes(raw[:at] + b'"JO"' + raw[at + 4 :])
    report = intake.collect(download, LAB, course)
    assert by_path(report)["smithjohn_2_9_lab.ipynb"] == (
        "refused",
        "2",
        "cannot be read from the download: Bad CRC-32 for file 'smithjohn_2_9_lab.ipynb'",
        "",
    )
    assert submitted_files(course) == ["1/mini/mini.ipynb", "1/mini/timestamp.txt"]


def test_an_unknown_id_is_refused_when_a_roster_is_loaded(with_roster, tmp_path):
    files = {
        "lovelaceada_1001_9_lab.ipynb": notebook("ada"),  # the roster's id
        "smithjohn_2002_9_lab.ipynb": notebook("john"),  # another id, the roster's name
        "nobody_3003_9_lab.ipynb": notebook("nobody"),
    }
    report = intake.collect(write_zip(tmp_path / "dl.zip", files), LAB, with_roster)
    assert by_path(report)["nobody_3003_9_lab.ipynb"] == (
        "refused",
        None,
        "unknown student: neither id '3003' nor name 'nobody' is in the gradebook's roster "
        "(5 students); add the student (autograder roster, or nbgrader db student add) and "
        "collect again",
        "",
    )
    assert submitted_files(with_roster) == [
        "1001/mini/mini.ipynb",
        "1001/mini/timestamp.txt",
        "s2/mini/mini.ipynb",
        "s2/mini/timestamp.txt",
    ]


def test_late_files_are_imported_and_flagged(course, tmp_path, empty_db):
    with_gradebook(course, empty_db)
    files = {
        "doejane_LATE_1_9_lab.ipynb": notebook("jane"),
        "smithjohn_2_9_lab.ipynb": notebook("john"),
        "leesam_3_9_lab.ipynb": notebook("sam"),
    }
    times = {"smithjohn_2_9_lab.ipynb": (2025, 3, 3, 1, 15, 0)}
    deadline = datetime(2025, 3, 1, 23, 59).astimezone()  # this machine's zone, as the zip
    download = write_zip(tmp_path / "dl.zip", files, times)
    code = cli.main(
        [
            "collect",
            str(download),
            "--lab",
            LAB,
            "--course",
            str(course),
            "--deadline",
            deadline.isoformat(),
        ]
    )
    assert code == 0  # late files are imported: nothing was refused
    report = (course / "collect.log").read_text()
    john = datetime(2025, 3, 3, 1, 15).astimezone(timezone.utc)
    assert (
        "imported doejane_LATE_1_9_lab.ipynb [1]: to submitted/1/mini/mini.ipynb LATE: marked "
        "late by Canvas" in report
    )
    assert (
        f"imported smithjohn_2_9_lab.ipynb [2]: to submitted/2/mini/mini.ipynb LATE: "
        f"{john:%Y-%m-%d %H:%M} UTC, 1 d 1 h 16 min after the deadline" in report
    )
    assert "imported leesam_3_9_lab.ipynb [3]: to submitted/3/mini/mini.ipynb\n" in report
    assert "3 imported, 0 replaced, 2 of them late" in report
    # the deadline is the lab's due date in nbgrader's gradebook: its late flag agrees
    with intake.gradebook(course) as gb:
        assert gb.find_assignment(LAB).duedate == deadline.astimezone(timezone.utc).replace(
            tzinfo=None
        )


def test_an_existing_submission_is_skipped_refused_or_replaced(course, tmp_path, capsys):
    target = submitted(course, "1")
    target.parent.mkdir(parents=True)
    target.write_bytes(notebook("first"))
    (target.parent / "timestamp.txt").write_text("2025-03-01 10:00:00.000000 UTC")
    same = write_zip(tmp_path / "same.zip", {"doejane_1_9_lab.ipynb": notebook("first")})
    other = write_zip(tmp_path / "other.zip", {"doejane_1_9_lab.ipynb": notebook("second")})
    args = ["collect", "--lab", LAB, "--course", str(course)]

    assert cli.main([*args, str(same)]) == 0
    assert "skipped  doejane_1_9_lab.ipynb [1]: identical to submitted/1/mini/mini.ipynb" in (
        capsys.readouterr().out
    )
    assert cli.main([*args, str(other)]) == 1
    assert (
        "refused  doejane_1_9_lab.ipynb [1]: a different notebook is already at "
        "submitted/1/mini/mini.ipynb: not overwritten (--force replaces it)"
    ) in capsys.readouterr().out
    assert target.read_bytes() == notebook("first")
    assert (target.parent / "timestamp.txt").read_text() == "2025-03-01 10:00:00.000000 UTC"

    assert cli.main([*args, "--force", str(other)]) == 0
    assert (
        "replaced doejane_1_9_lab.ipynb [1]: to submitted/1/mini/mini.ipynb, regraded by "
        "autograde --changed"
    ) in capsys.readouterr().out
    assert target.read_bytes() == notebook("second")


def test_a_pattern_with_a_timestamp_and_unsafe_ids(course, tmp_path):
    files = {
        "ada--2025-03-02T10:00:00Z--lab.ipynb": notebook("ada"),
        "..--2025-03-02T10:00:00Z--lab.ipynb": notebook("dots"),
        "bob--yesterday--lab.ipynb": notebook("bob"),
    }
    report = intake.collect(
        write_zip(tmp_path / "dl.zip", files),
        LAB,
        course,
        pattern=r"^(?P<student>[^-]+)--(?P<timestamp>[^-][^/]*?)--lab",
    )
    assert {e.path: (e.status, e.reason) for e in report.entries} == {
        "ada--2025-03-02T10:00:00Z--lab.ipynb": ("imported", "to submitted/ada/mini/mini.ipynb"),
        "..--2025-03-02T10:00:00Z--lab.ipynb": (
            "refused",
            "the student id '..' cannot be a folder of submitted/ (expected no '/', no leading "
            "'.', no control character)",
        ),
        "bob--yesterday--lab.ipynb": (
            "refused",
            "the timestamp 'yesterday' in the file name is not a time",
        ),
    }
    stamp = (course / "submitted" / "ada" / LAB / "timestamp.txt").read_text()
    assert stamp == "2025-03-02 10:00:00.000000 UTC"
    assert submitted_files(course) == ["ada/mini/mini.ipynb", "ada/mini/timestamp.txt"]


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--lab", "nolab"],
            "nolab is not released in {course} (no release/nolab/nolab.ipynb): "
            "release it first (autograder release, make release)",
        ),
        (
            ["--deadline", "2025-03-01T23:59"],
            "--deadline '2025-03-01T23:59' has no time zone "
            "(expected e.g. 2025-03-01T23:59+01:00 or 2025-03-01T23:59Z)",
        ),
        (
            ["--deadline", "friday"],
            "--deadline 'friday' is not an ISO 8601 time (expected e.g. 2025-03-01T23:59+01:00)",
        ),
    ],
)
def test_the_command_stops_on_bad_arguments(course, tmp_path, capsys, args, message):
    download = write_zip(tmp_path / "dl.zip", {"doejane_1_9_lab.ipynb": notebook("jane")})
    argv = ["collect", str(download), "--course", str(course), *args]
    argv += [] if "--lab" in args else ["--lab", LAB]
    assert cli.main(argv) == 2
    assert capsys.readouterr().err.strip() == message.format(course=course)
    assert not (course / "submitted").exists()


def test_a_source_that_is_no_zip_stops_the_command(course, tmp_path):
    (tmp_path / "dl.zip").write_bytes(b"PK not really")
    with pytest.raises(intake.IntakeError) as exc:
        intake.collect(tmp_path / "dl.zip", LAB, course)
    assert str(exc.value) == (
        f"{tmp_path / 'dl.zip'}: not a zip file (File is not a zip file); expected the LMS's zip"
    )
    with pytest.raises(intake.IntakeError) as exc:
        intake.collect(tmp_path / "missing.zip", LAB, course)
    assert str(exc.value) == (
        f"{tmp_path / 'missing.zip'}: no such file or folder (expected the LMS's zip or a folder)"
    )


# ---------------------------------------------------------------- roster


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def students(course: Path) -> dict[str, tuple]:
    with intake.gradebook(course) as gb:
        return {s.id: (s.first_name, s.last_name, s.email) for s in gb.students}


def test_a_roster_fills_the_student_table(tmp_path, capsys):
    course = tmp_path / "course"
    roster = write_csv(
        tmp_path / "roster.csv",
        'id,first_name,last_name,email\ns1,Jane,Doe,jane@uni.example\n\ns2,"John",Smith,\n',
    )
    assert cli.main(["roster", str(roster), "--course", str(course)]) == 0
    assert capsys.readouterr().out.strip() == (
        f"{roster}: 2 student(s) added, 0 updated, 0 unchanged, 0 row(s) not imported"
    )
    assert students(course) == {
        "s1": ("Jane", "Doe", "jane@uni.example"),
        "s2": ("John", "Smith", None),
    }
    write_csv(roster, "id,first_name,last_name,email\ns1,Jane,Doe,jd@uni.example\ns2,John,Smith,\n")
    assert cli.main(["roster", str(roster), "--course", str(course)]) == 0
    assert (
        capsys.readouterr()
        .out.strip()
        .endswith("0 student(s) added, 1 updated, 1 unchanged, 0 row(s) not imported")
    )
    assert students(course)["s1"] == ("Jane", "Doe", "jd@uni.example")


def test_bad_rows_are_reported_with_their_line_and_the_rest_imported(tmp_path, capsys, empty_db):
    course = with_gradebook(tmp_path / "course", empty_db)
    roster = write_csv(
        tmp_path / "roster.csv",
        "id,first_name,last_name,email\n"
        "s1,Jane,Doe,\n"  # line 2
        ",No,Id,\n"  # line 3
        "s3,Ada,Lovelace,\n"  # line 4
        "s1,Janet,Doe,\n"  # line 5: the id of line 2 again
        's6,"Ann\nMarie",Lee,\n'  # lines 6-7: a line break in a quoted name
        's7,Tom,"Smith, Jr.",\n'  # line 8
        "s8,Ann,Lee,ann@x,extra\n"  # line 9
        ".hidden,Dot,Name,\n",  # line 10
    )
    assert cli.main(["roster", str(roster), "--course", str(course)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{roster}:3: no student id: row not imported",
        f"{roster}:5: student id 's1' is also on line 2: neither row imported",
        f"{roster}:6: first_name 'Ann\\nMarie' holds a comma or line break, which nbgrader "
        "export does not quote: row not imported",
        f"{roster}:8: last_name 'Smith, Jr.' holds a comma or line break, which nbgrader "
        "export does not quote: row not imported",
        f"{roster}:9: 5 values for 4 columns: row not imported",
        f"{roster}:10: the student id '.hidden' cannot be a folder of submitted/ (expected no "
        "'/', no leading '.', no control character): row not imported",
        f"{roster}: 1 student(s) added, 0 updated, 0 unchanged, 7 row(s) not imported",
    ]
    assert students(course) == {"s3": ("Ada", "Lovelace", None)}


def test_roster_headers_are_mapped_and_excel_csv_is_read(tmp_path, capsys, empty_db):
    course = with_gradebook(tmp_path / "course", empty_db)
    roster = tmp_path / "export.csv"
    # Excel's "CSV UTF-8" in a locale with decimal commas: a BOM and semicolons
    roster.write_text(
        "Student ID;Given name;Family name;Section\n1001;Ada;Lovelace;A\n", "utf-8-sig"
    )
    argv = ["roster", str(roster), "--course", str(course), "--column", "id=Student ID"]
    argv += ["--column", "first_name=given name", "--column", "last_name=Family name"]
    assert cli.main(argv) == 0
    assert capsys.readouterr().out.splitlines() == [
        "columns not used: Section",
        "no column for email: left empty in the gradebook",
        f"{roster}: 1 student(s) added, 0 updated, 0 unchanged, 0 row(s) not imported",
    ]
    assert students(course) == {"1001": ("Ada", "Lovelace", None)}


def test_a_roster_without_an_id_column_stops(tmp_path, capsys):
    roster = write_csv(tmp_path / "roster.csv", "ID,Name\n1,Ada\n")
    course = tmp_path / "course"
    assert cli.main(["roster", str(roster), "--course", str(course), "--column", "id=SIS"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"{roster}:1: no column 'SIS' for the student id in the header (ID, Name); name it "
        "with --column id=HEADER"
    )
    assert cli.main(["roster", str(roster), "--column", "name=Name"]) == 2
    assert capsys.readouterr().err.strip() == (
        "--column 'name=Name': expected FIELD=HEADER with FIELD one of id, first_name, "
        "last_name, email, lms_user_id"
    )
    assert not (course / "gradebook.db").exists()


# ---------------------------------------------------------------- manual grades


def grade(auto=None, manual=None, extra=None):
    score = manual + (extra or 0) if manual is not None else auto if auto is not None else 0
    return SimpleNamespace(auto_score=auto, manual_score=manual, score=score)


MANUAL = {
    "name": "why-prior",
    "score": 0.0,
    "max_score": 1.0,
    "status": "failed",
    "visibility": "visible",
    "output": "awaiting manual grading",
}
AUTO = {
    "name": "kl",
    "score": 0.0,
    "max_score": 2.0,
    "status": "failed",
    "visibility": "visible",
    "output": "failed: check_kl_divergence: KL for mu = 2.0",
}


def test_a_manual_grade_replaces_awaiting_manual_grading():
    graded = manual.entry(MANUAL, grade(manual=1.0), "clear, two sentences")
    assert graded == {
        **MANUAL,
        "score": 1.0,
        "status": "passed",
        "output": "graded by hand: 1/1 (clear, two sentences)",
    }
    assert manual.entry(graded, grade(manual=1.0), "clear, two sentences") == graded
    # the grade cleared in formgrader: awaiting again
    assert manual.entry(graded, grade(), None) == MANUAL


def test_a_manual_override_of_an_autograded_test_keeps_the_autograder_message():
    overridden = manual.entry(AUTO, grade(auto=0.0, manual=1.5), None)
    assert overridden == {
        **AUTO,
        "score": 1.5,
        "output": AUTO["output"] + "\ngraded by hand: 1.5/2",
    }
    assert manual.entry(overridden, grade(auto=0.0), None) == AUTO


# ---------------------------------------------------------------- a class of 6, end to end

MINI = ROOT / "tests" / "templates" / "mini.md"
CLASS = [  # id, first, last, email, what they hand in
    ("20001", "Ada", "Lovelace", "ada@uni.example", "full"),
    ("20002", "Alan", "Turing", "alan@uni.example", "partial"),
    ("20003", "Grace", "Hopper", "grace@uni.example", "untouched"),
    ("20004", "Edsger", "Dijkstra", "edsger@uni.example", "broken"),
    ("20005", "Barbara", "Liskov", "barbara@uni.example", "two notebooks"),
    ("20006", "Donald", "Knuth", "donald@uni.example", "full, late"),
]


@pytest.fixture(scope="module")
def graded_class(tmp_path_factory):
    """The test lab released; a roster of 6; their Moodle download collected and graded."""
    from autograder import course as course_
    from autograder import demo
    from autograder.build import build

    out = tmp_path_factory.mktemp("class")
    assert not build([MINI], out / "views")
    course = out / "course"
    (released,) = course_.release(course, [out / "views" / "nbgrader" / "mini.ipynb"])
    release = nbformat.read(released, as_version=4)
    solution = nbformat.read(out / "views" / "solution" / "mini.ipynb", as_version=4)
    partial = demo.read_partial(ROOT / "examples" / "mini.partial.py")
    work = {
        "full": nbformat.writes(demo.fill(release, solution, {})).encode(),
        "partial": nbformat.writes(demo.fill(release, solution, partial)).encode(),
        "untouched": nbformat.writes(release).encode(),
    }
    files, times = {}, {}
    for sid, first, last, _, kind in CLASS:
        folder = f"{first} {last}_{int(sid) % 1000 + 700}_assignsubmission_file_"
        if kind == "broken":
            files[f"{folder}/mini.ipynb"] = work["full"][:500]  # cut off mid-upload
        elif kind == "two notebooks":
            files[f"{folder}/mini.ipynb"] = work["partial"]
            files[f"{folder}/mini-checkpoint.ipynb"] = work["full"]
        else:
            files[f"{folder}/mini.ipynb"] = work[kind.split(",")[0]]
        if kind.endswith("late"):
            times[f"{folder}/mini.ipynb"] = (2025, 3, 2, 8, 0, 0)
    download = write_zip(out / "moodle.zip", files, times)
    roster = out / "roster.csv"
    with open(roster, "w", newline="") as f:
        csv.writer(f).writerows(
            [("id", "first_name", "last_name", "email")] + [c[:4] for c in CLASS]
        )
    assert cli.main(["roster", str(roster), "--course", str(course)]) == 0
    deadline = datetime(2025, 3, 1, 23, 59).astimezone().isoformat()
    argv = ["collect", str(download), "--lab", LAB, "--course", str(course), "--deadline", deadline]
    assert cli.main(argv) == 1  # the broken and the duplicate ones were refused
    summary = course_.autograde(course)
    return course, files, summary


slow = pytest.mark.slow


@slow
def test_a_class_is_collected_graded_and_exported_with_names(graded_class):
    from autograder import demo

    course, files, summary = graded_class
    log = (course / "collect.log").read_text()
    assert all(path in log for path in files)  # every file of the download has its line
    assert (
        "refused  Edsger Dijkstra_704_assignsubmission_file_/mini.ipynb [20004]: not a "
        "notebook: not valid JSON (Expecting property name enclosed in double quotes at line 23 "
        "column 1)\n" in log
    )
    assert log.count("one of 2 notebooks of 20005 in this download") == 2
    (knuth,) = [line for line in log.splitlines() if line.startswith("imported Donald Knuth")]
    assert " LATE: " in knuth and knuth.endswith(" UTC, 8 h 1 min after the deadline")
    assert "4 imported, 0 replaced, 1 of them late, 0 skipped, 3 refused" in log
    assert len(summary.outcomes) == 4 and not summary.failed
    grades = {r["student_id"]: r for r in csv.DictReader(open(course / "grades.csv"))}
    assert {sid: (r["first_name"], r["last_name"], r["email"]) for sid, r in grades.items()} == {
        c[0]: c[1:4] for c in CLASS
    }
    scores = {sid: float(r["score"]) for sid, r in grades.items()}
    # 6 points: reparameterize 3 + kl 2 autograded, the question 1 by hand
    assert scores == {
        "20001": 5.0,
        "20002": 3.0,
        "20003": 0.0,
        "20004": 0.0,
        "20005": 0.0,
        "20006": 5.0,
    }
    assert grades["20004"]["timestamp"] == grades["20005"]["timestamp"] == ""  # not submitted
    assert grades["20006"]["timestamp"] > grades["20006"]["duedate"] > grades["20001"]["timestamp"]
    table = {r["student"]: (r["score"], r["manual"]) for r in demo.grade_table(course)}
    assert table == {"20001": (5.0, 1), "20002": (3.0, 1), "20003": (0.0, 0), "20006": (5.0, 1)}


@slow
def test_a_manual_grade_reaches_grades_csv_and_the_grade_table(graded_class):
    from nbgrader.api import Gradebook

    from autograder import course as course_
    from autograder import demo

    course, _, _ = graded_class
    # what formgrader does when a grader types 1 into the MANUAL answer's score box
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", course_.COURSE_ID) as gb:
        why = gb.find_grade("why-prior", LAB, LAB, "20001")
        assert (why.auto_score, why.manual_score, why.max_score) == (None, None, 1.0)
        why.manual_score = 1.0
        why.needs_manual_grade = False
        gb.db.commit()
    changed = manual.refresh(course)
    assert changed == [("20001", LAB, "why-prior", 1.0)]
    grades = {
        r["student_id"]: float(r["score"]) for r in csv.DictReader(open(course / "grades.csv"))
    }
    table = {r["student"]: (r["score"], r["manual"]) for r in demo.grade_table(course)}
    assert grades["20001"] == table["20001"][0] == 6.0 and table["20001"][1] == 0
    results = json.loads((course / "autograded" / "20001" / LAB / "results.json").read_text())
    assert results["tests"][-1]["output"] == "graded by hand: 1/1"
    # every other row agrees too, and nothing changes when nothing was graded since
    assert all(grades[s] == score for s, (score, _) in table.items())
    assert manual.refresh(course) == []
    # regrading the submission keeps the grade a person entered
    from autograder import batch

    again = batch.Selection(students=frozenset({"20001"}), force=True)
    assert len(course_.autograde(course, selection=again).outcomes) == 1
    results = json.loads((course / "autograded" / "20001" / LAB / "results.json").read_text())
    assert results["tests"][-1]["output"] == "graded by hand: 1/1"
    table = {r["student"]: r["score"] for r in demo.grade_table(course)}
    grades = {
        r["student_id"]: float(r["score"]) for r in csv.DictReader(open(course / "grades.csv"))
    }
    assert table["20001"] == grades["20001"] == 6.0


@contextlib.contextmanager
def formgrader(course: Path):
    """nbgrader's formgrader in a Jupyter server rooted at the course, as an instructor starts
    it (`jupyter lab` in the course directory); yields a caller of its HTTP pages and API."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = secrets.token_hex(16)
    command = [sys.executable, "-m", "jupyter_server", "--no-browser", "--allow-root"]
    command += [f"--port={port}", f"--IdentityProvider.token={token}"]
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    log = open(course.parent / "formgrader.log", "w")
    server = subprocess.Popen(
        command, cwd=course, env={**os.environ, "PATH": path}, stdout=log, stderr=log
    )

    def call(method: str, url: str, body: dict | None = None):
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}{url}",
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
            method=method,
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            text = response.read().decode()
        return json.loads(text) if "/api/" in url else text

    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                call("GET", "/api/status")
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "no server"
                time.sleep(1)
        yield call
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


@slow
def test_formgrader_grades_a_manual_answer_and_it_counts_everywhere(graded_class):
    """The steps of docs/course-workflow.md, through formgrader's own pages and API."""
    from autograder import demo

    course, _, _ = graded_class
    with formgrader(course) as call:
        listed = call("GET", f"/formgrader/api/submitted_notebooks/{LAB}/{LAB}")
        turing = {s["student"]: s for s in listed}["20002"]
        assert turing["needs_manual_grade"] and turing["last_name"] == "Turing"
        page = call("GET", f"/formgrader/submissions/{turing['id']}/")
        assert 'id="why-prior"' in page  # the score box of the MANUAL answer
        grades = call("GET", f"/formgrader/api/grades?submission_id={turing['id']}")
        (why,) = [g for g in grades if g["name"] == "why-prior"]
        call("PUT", f"/formgrader/api/grade/{why['id']}", {"manual_score": 0.5})
        comments = call("GET", f"/formgrader/api/comments?submission_id={turing['id']}")
        (note,) = [c for c in comments if c["name"] == "why-prior"]
        call("PUT", f"/formgrader/api/comment/{note['id']}", {"manual_comment": "Say why."})
    assert ("20002", LAB, "why-prior", 0.5) in manual.refresh(course)
    grades = {
        r["student_id"]: float(r["score"]) for r in csv.DictReader(open(course / "grades.csv"))
    }
    table = {r["student"]: (r["score"], r["manual"]) for r in demo.grade_table(course)}
    assert grades["20002"] == table["20002"][0] == 3.5 and table["20002"][1] == 0
    results = json.loads((course / "autograded" / "20002" / LAB / "results.json").read_text())
    assert results["tests"][-1]["output"] == "graded by hand: 0.5/1 (Say why.)"
    assert "Say why." in (course / "feedback" / "20002" / LAB / f"{LAB}.html").read_text()
