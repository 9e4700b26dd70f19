"""Every template error is reported as FILE:LINE: message, all at once, and nothing is written."""

from pathlib import Path

import pytest

from autograder.build import build_views
from autograder.cli import main
from autograder.template import TemplateError, read_template
from tests.conftest import ROOT

# The header written by write_template is 7 lines; the body starts at line 8.
CASES = {
    "nested HWBEGIN": (
        "```python\nx = (\n    #!TAG HWBEGIN\n    1\n    #!TAG HWBEGIN\n)\n```\n",
        [(12, "#!TAG HWBEGIN inside the region opened at line 10")],
    ),
    "HWEND without HWBEGIN": (
        "```python\nx = 1\n#!TAG HWEND\n```\n",
        [(10, "#!TAG HWEND without a matching #!TAG HWBEGIN")],
    ),
    "never closed, across cells": (
        "```python\ndef f():\n    #!TAG HWBEGIN\n    return 1\n```\n\n```python\ny = 2\n```\n",
        [(10, "region opened here is never closed (expected #!TAG HWEND before the end")],
    ),
    "open at end of file": (
        "Some text.\n\n#!TAG HWBEGIN\nThe answer.\n",
        [(10, "region opened here is never closed")],
    ),
    "hidden tests spanning cells": (
        "```python\n#!TAG TEST t1 1\n#!TAG HIDDENBEGIN\nassert True\n```\n\n"
        "```python\n#!TAG HIDDENEND\n```\n",
        [
            (10, "region opened here is still open at the end of the cell"),
            (15, "#!TAG HIDDENEND without a matching #!TAG HIDDENBEGIN"),
        ],
    ),
    "a test cell inside a solution region": (
        "```python\n#!TAG HWBEGIN\nx = 1\n```\n\n```python\n#!TAG TEST t1 1\nassert x\n```\n\n"
        "```python\n#!TAG HWEND\n```\n",
        [
            (14, "a test cell inside the solution region opened at line 9"),
            (19, "#!TAG HWEND without a matching #!TAG HWBEGIN"),
        ],
    ),
    "a locked cell inside a solution region": (
        "```python\n#!TAG HWBEGIN\nx = 1\n```\n\n```python\n#!TAG LOCKED\nimport os\n"
        "#!TAG HWEND\n```\n",
        [
            (14, "a LOCKED cell inside the solution region opened at line 9"),
            (16, "#!TAG HWEND without a matching #!TAG HWBEGIN"),
        ],
    ),
    "a MANUAL answer spanning cells": (
        "<!-- #region -->\n#!TAG MANUAL q1 1\n#!TAG HWBEGIN\nThe answer.\n<!-- #endregion -->\n\n"
        "More.\n#!TAG HWEND\n",
        [
            (10, "region opened here is still open at the end of the cell"),
            (15, "#!TAG HWEND without a matching #!TAG HWBEGIN"),
        ],
    ),
    "MSG outside a region": (
        "```python\n#!MSG do something\nx = 1\n```\n",
        [(9, "#!MSG outside a solution region")],
    ),
    "unknown tag": (
        "```python\n#!TAG HWBEGINN\nx = 1\n```\n",
        [(9, "unknown tag #!TAG HWBEGINN (did you mean HWBEGIN? expected one of")],
    ),
    "a tag without a word": (
        "```python\n#!TAG\nx = 1\n```\n",
        [(9, "#!TAG without a word")],
    ),
    "test id used twice": (
        "```python\n#!TAG TEST t1 1\nassert True\n```\n\n```python\n#!TAG TEST t1 2\nassert True\n```\n",
        [(14, "id 't1' already used at line 9")],
    ),
    "missing points": (
        "```python\n#!TAG TEST t1\nassert True\n```\n",
        [(9, "#!TAG TEST takes an id and points")],
    ),
    "zero points": (
        "```python\n#!TAG TEST t1 0\nassert True\n```\n",
        [(9, "points '0' (expected a positive number)")],
    ),
    "negative points": (
        "<!-- #region -->\n#!TAG MANUAL q1 -2\n#!TAG HWBEGIN\nx\n#!TAG HWEND\n<!-- #endregion -->\n",
        [(9, "points '-2' (expected a positive number)")],
    ),
    "student view does not parse": (  # no placeholder can stand for parameters
        "```python\ndef f(\n    a,\n    #!TAG HWBEGIN\n    b,\n    #!TAG HWEND\n):\n    pass\n```\n",
        [(11, "the student view of this cell does not parse")],
    ),
    "hidden tests outside a test cell": (
        "```python\n#!TAG HIDDENBEGIN\nassert True\n#!TAG HIDDENEND\n```\n",
        [(9, "#!TAG HIDDENBEGIN outside a test cell")],
    ),
    "header tag below the top": (
        "```python\nx = 1\n#!TAG LOCKED\n```\n",
        [(10, "#!TAG LOCKED after the first lines of the cell")],
    ),
    "TEST in a markdown cell": (
        "#!TAG TEST t1 1\nSome text.\n",
        [(8, "#!TAG TEST in a markdown cell (expected a code cell)")],
    ),
    "MANUAL without an answer": (
        "#!TAG MANUAL q1 1\nWhy?\n",
        [(8, "MANUAL cell without a region")],
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_error_names_file_and_line(name: str, write_template) -> None:
    body, expected = CASES[name]
    path = write_template(body)
    try:
        got = build_views(read_template(path))[1]  # view errors are returned
    except TemplateError as exc:  # parse errors are raised
        got = exc.errors
    assert len(got) == len(expected), got
    for error, (line, message) in zip(got, expected, strict=True):
        assert error.startswith(f"{path}:{line}: "), error
        assert message in error, error


# Slips that lose nothing: each is read as meant, with a warning; the build goes on.
WARNING_CASES = {
    "stray character on a header tag": (
        "```python\n#!TAG SKIPQUESTEXEC'\nx = 1\n```\n",
        [(9, "warning: unknown tag #!TAG SKIPQUESTEXEC': did you mean SKIPQUESTEXEC?")],
    ),
    "a region tag in lower case": (
        "```python\n#!TAG hwbegin\nx = 1\n#!TAG HwEnd\n```\n",
        [
            (9, "warning: unknown tag #!TAG hwbegin: did you mean HWBEGIN? (read as HWBEGIN)"),
            (11, "warning: unknown tag #!TAG HwEnd: did you mean HWEND? (read as HWEND)"),
        ],
    ),
    "SKIPQUESTEXEC repeated": (
        "```python\n#!TAG SKIPQUESTEXEC\nx = 1\n#!TAG SKIPQUESTEXEC\ny = 2\n```\n",
        [(11, "warning: #!TAG SKIPQUESTEXEC repeated in this cell")],
    ),
    "SKIPQUESTEXEC in the middle of a cell": (
        "```python\nx = 1\n#!TAG SKIPQUESTEXEC\n```\n",
        [(10, "warning: #!TAG SKIPQUESTEXEC below the first lines of the cell: the cell is skipped")],
    ),
    "SKIPQUESTEXEC in markdown": (
        "#!TAG SKIPQUESTEXEC\nSome text.\n",
        [(8, "warning: #!TAG SKIPQUESTEXEC in a markdown cell has no effect")],
    ),
    "text after a region tag": (
        "```python\n#!TAG HWBEGIN here\nx = 1\n#!TAG HWEND\n```\n",
        [(9, "warning: text after #!TAG HWBEGIN is ignored: 'here'")],
    ),
}


@pytest.mark.parametrize("name", sorted(WARNING_CASES))
def test_warning_names_file_and_line_and_the_reading(name: str, write_template) -> None:
    body, expected = WARNING_CASES[name]
    path = write_template(body)
    template = read_template(path)
    assert build_views(template)[1] == []
    assert len(template.warnings) == len(expected), template.warnings
    for warning, (line, message) in zip(template.warnings, expected, strict=True):
        assert warning.startswith(f"{path}:{line}: "), warning
        assert message in warning, warning


def test_a_slipped_skip_tag_still_skips_the_cell(write_template) -> None:
    for name in ("stray character on a header tag", "SKIPQUESTEXEC in the middle of a cell"):
        template = read_template(write_template(WARNING_CASES[name][0]))
        assert template.cells[-1].skip, name


@pytest.mark.parametrize("name", ["student view does not parse"])
def test_view_errors_are_reported_by_build(name: str, write_template, tmp_path: Path) -> None:
    body, [(line, message)] = CASES[name]
    path = write_template(body)
    from autograder.build import build

    errors = build([path], tmp_path / "out")
    assert len(errors) == 1 and errors[0].startswith(f"{path}:{line}: ") and message in errors[0]


def test_all_errors_of_a_file_in_one_pass(write_template) -> None:
    body = CASES["MSG outside a region"][0] + "\n" + CASES["unknown tag"][0]
    path = write_template(body)
    with pytest.raises(TemplateError) as info:
        read_template(path)
    assert [e.split(": ")[0] for e in info.value.errors] == [f"{path}:9", f"{path}:14"]


def test_cli_writes_nothing_when_any_template_is_invalid(write_template, tmp_path, capsys) -> None:
    good = write_template("```python\nx = 1\n```\n", name="good")
    bad = write_template(CASES["HWEND without HWBEGIN"][0], name="bad")
    out = tmp_path / "out"
    assert main(["build", "--out", str(out), str(good), str(bad)]) == 1
    assert not out.exists()
    err = capsys.readouterr().err
    assert f"{bad}:10: #!TAG HWEND without a matching #!TAG HWBEGIN" in err


def test_seed_double_hwbegin_points_at_the_second_hwbegin(tmp_path: Path, capsys) -> None:
    """The seed `000_*.txt` closes the region in KLDivergence with a second HWBEGIN (line 318)."""
    seeds = sorted((ROOT.parent / "shared" / "seeds").glob("000_*.txt"))
    if not seeds:
        pytest.skip("../shared/seeds is not beside this checkout")
    seed = seeds[0]
    lines = seed.read_text().splitlines()
    assert lines[317].strip() == "#!TAG HWBEGIN" and lines[314].strip() == "#!TAG HWBEGIN"
    out = tmp_path / "out"
    assert main(["build", "--out", str(out), str(seed)]) == 1
    assert not out.exists()
    err = capsys.readouterr().err.splitlines()
    assert (
        err[0]
        == f"{seed}:318: #!TAG HWBEGIN inside the region opened at line 315 (expected #!TAG HWEND first)"
    )
    assert len(err) == 2  # the error and the summary line: one mistake, one message
