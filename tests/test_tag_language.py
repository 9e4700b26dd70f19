"""The tag language as instructors write it: regions across cells, regions at every syntactic
position, tags at column 0, commented hints, slips; and `autograder check`."""

import ast
from pathlib import Path

import pytest

from autograder.build import build_views
from autograder.cli import main
from autograder.template import read_template
from autograder.views import python_source, render
from tests.conftest import ROOT

SEEDS = ROOT.parent / "shared" / "seeds"


def code(source: str) -> str:
    return f"```python\n{source}\n```\n"


def student_cells(path: Path) -> list[str]:
    notebooks, errors = build_views(read_template(path))
    assert errors == []
    return [c.source for c in notebooks["student"].cells]


# Where a region stands -> (cell source with REGION for the region, the placeholder expected).
POSITIONS = {
    "statements": ("x = 1\nREGION\nprint(y)", "..."),
    "a function body": ("def f(a):\n    REGION", "..."),
    "a block in a function": ("def f(a):\n    if a:\n        REGION\n    return a", "..."),
    "an expression in parentheses": ("x = (\n    REGION\n)", "..."),
    "the leading element": ("xs = [\n    REGION\n    2,\n    3,\n]", "...,"),
    "a middle element": ("xs = [\n    1,\n    REGION\n    3,\n]", "...,"),
    "the trailing element": ("xs = [\n    1,\n    2,\n    REGION\n]", "..."),
    "a middle argument": ("t = max(\n    1,\n    REGION\n    3,\n)", "...,"),
    "a dict value": ('d = {\n    "a":\n    REGION\n    "b": 2,\n}', "...,"),
    "a dict entry": ('d = {\n    "a": 1,\n    REGION\n    "c": 3,\n}', "...: ...,"),
    "keyword arguments after keywords": ("t = dict(a=1,\n    REGION\n    c=3)", "**...,"),
    "keyword arguments before keywords": ("t = dict(\n    REGION\n    c=3)", "...,"),
}
BODIES = {
    "statements": "y = 2",
    "a function body": "return a + 1",
    "a block in a function": "a = a * 2",
    "an expression in parentheses": "1 + 2",
    "the leading element": "1,",
    "a middle element": "2,",
    "the trailing element": "3,",
    "a middle argument": "2,",
    "a dict value": "1,",
    "a dict entry": '"b": 2,',
    "keyword arguments after keywords": "b=2,",
    "keyword arguments before keywords": "a=1, b=2,",
}


@pytest.mark.parametrize("where", sorted(POSITIONS))
def test_every_region_gets_a_stub_that_parses_where_it_stands(where, write_template) -> None:
    source, placeholder = POSITIONS[where]
    indent = source.split("REGION")[0].rsplit("\n", 1)[-1]
    body = BODIES[where]
    region = f"#!TAG HWBEGIN\n{indent}#!MSG hint-{where}\n{indent}{body}\n{indent}#!TAG HWEND"
    solution = source.replace("REGION", region)
    [student] = student_cells(write_template(code(solution)))
    ast.parse(student)
    lines = [line.strip() for line in student.split("\n")]
    assert body.strip() not in lines
    assert f"# TODO: hint-{where}" in lines
    assert lines[lines.index("# YOUR CODE HERE") + 1] == placeholder
    # the stub and the hint follow the code's indentation, though the HWBEGIN is at column 0
    assert f"{indent}# YOUR CODE HERE" in student.split("\n")


def test_a_region_across_cells_removes_the_cells_inside_it(write_template) -> None:
    path = write_template(
        code(
            "import math\n#!TAG HWBEGIN\n#!MSG define area\ndef area(r):\n    return math.pi * r * r"
        )
        + "\nWhy the square: the area grows with both dimensions.\n\n"
        + code("def volume(r, h):\n    return area(r) * h")
        + "\n"
        + code("unit = area(1)\n#!TAG HWEND\nprint('provided')")
        + "\n"
        + code("#!TAG HWBEGIN\nfull = volume(1, 2)")
        + "\n"
        + code("#!TAG HWEND")
        + "\nThe end.\n"
    )
    template = read_template(path)
    assert [c.solution_only for c in template.cells] == [
        False, True, True, False, False, True, False,
    ]  # fmt: skip
    student = student_cells(path)
    assert student == [
        "import math\n# TODO: define area\n# YOUR CODE HERE\n...",
        "print('provided')",
        "# YOUR CODE HERE\n...",
        "The end.",
    ]
    solution = [c.source for c in build_views(template)[0]["solution"].cells]
    assert len(solution) == 7 and "def volume(r, h):" in solution[2]
    # the nbgrader view keeps every cell; nbconvert's TagRemovePreprocessor drops the inner ones
    nbgrader = build_views(template)[0]["nbgrader"].cells
    removed = [i for i, c in enumerate(nbgrader) if "solution-only" in c.metadata.get("tags", [])]
    assert removed == [1, 2, 5]
    assert all("nbgrader" not in nbgrader[i].metadata for i in removed)
    assert nbgrader[3].metadata["dgm_labs"] == {"stubs": [""]}  # the closing cell: no stub


def test_a_written_answer_across_markdown_cells(write_template) -> None:
    path = write_template(
        "Explain.\n\n#!TAG HWBEGIN\n# #!MSG start from the definition\nFirst part.\n\n"
        "```python\nx = 1\n```\n\nSecond part.\n#!TAG HWEND\nAfter.\n"
    )
    assert student_cells(path) == ["Explain.\n\nstart from the definition", "After."]


def test_commented_hints_are_hints_and_leave_no_tag_line(write_template) -> None:
    path = write_template(
        code("def f():\n    #!TAG HWBEGIN\n    # #!MSG return one\n    return 1\n    #!TAG HWEND")
    )
    template = read_template(path)
    assert template.cells[0].regions[0].hints == ["return one"]
    solution = build_views(template)[0]["solution"].cells[0].source
    assert solution == "def f():\n    return 1"
    assert student_cells(path) == [
        "def f():\n    # TODO: return one\n    # YOUR CODE HERE\n    ..."
    ]


def test_the_stub_of_an_empty_region_stands_at_its_tag(write_template) -> None:
    path = write_template(code("def f():\n    #!TAG HWBEGIN\n    #!TAG HWEND\n    return 1"))
    assert student_cells(path) == ["def f():\n    # YOUR CODE HERE\n    ...\n    return 1"]


def test_views_of_every_cell_parse_with_magics(write_template) -> None:
    path = write_template(
        code("%matplotlib inline\nxs = [\n    #!TAG HWBEGIN\n    1,\n    #!TAG HWEND\n    2,\n]")
    )
    for cell in render(read_template(path), "student"):
        ast.parse(python_source(cell.source))


def seed(prefix: str) -> Path:
    found = sorted(SEEDS.glob(f"{prefix}_*.txt"))
    if not found:
        pytest.skip("../shared/seeds is not beside this checkout")
    return found[0]


SEED_DEFECTS = {"000": (318, 315), "001": (561, 558)}  # the second HWBEGIN, the first


@pytest.mark.parametrize("prefix", sorted(SEED_DEFECTS))
def test_seed_templates_stop_at_their_second_hwbegin(prefix, tmp_path, capsys) -> None:
    path = seed(prefix)
    second, first = SEED_DEFECTS[prefix]
    assert main(["check", str(path)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"{path}:{second}: #!TAG HWBEGIN inside the region opened at line {first} "
        "(expected #!TAG HWEND first)"
    ]


@pytest.mark.parametrize("prefix", sorted(SEED_DEFECTS))
def test_seed_templates_build_once_their_defect_is_fixed(prefix, tmp_path, capsys) -> None:
    path = seed(prefix)
    second, _ = SEED_DEFECTS[prefix]
    lines = path.read_text().split("\n")
    assert lines[second - 1].strip() == "#!TAG HWBEGIN"
    lines[second - 1] = lines[second - 1].replace("HWBEGIN", "HWEND")
    fixed = tmp_path / f"{prefix}.md"
    fixed.write_text("\n".join(lines))
    assert main(["build", "--strict", "--out", str(tmp_path / "out"), str(fixed)]) == 0
    for view in ("student", "solution", "nbgrader"):
        assert (tmp_path / "out" / view / f"{prefix}.ipynb").is_file()


def test_check_reports_every_problem_and_one_line_per_file(write_template, capsys) -> None:
    good = write_template(code("x = 1"), name="good")
    slip = write_template(code("#!TAG SKIPQUESTEXEC'\nx = 1"), name="slip")
    bad = write_template(code("#!TAG HWEND\n#!TAG HWBEGINN"), name="bad")
    assert main(["check", str(good), str(slip)]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [f"{good}: ok", f"{slip}: 1 warning"]
    assert err.splitlines() == [
        f"{slip}:9: warning: unknown tag #!TAG SKIPQUESTEXEC': did you mean SKIPQUESTEXEC? "
        "(read as SKIPQUESTEXEC)"
    ]
    assert main(["check", "--strict", str(good), str(slip), str(bad)]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines() == [f"{good}: ok", f"{slip}: 1 warning", f"{bad}: 2 errors"]
    assert len(err.splitlines()) == 3


def test_build_writes_despite_warnings_unless_strict(write_template, tmp_path, capsys) -> None:
    slip = write_template(code("#!TAG SKIPQUESTEXEC'\nx = 1"), name="slip")
    out = tmp_path / "out"
    assert main(["build", "--strict", "--out", str(out), str(slip)]) == 1
    assert not out.exists()
    assert "warnings count as errors" in capsys.readouterr().err
    assert main(["build", "--warn", "--out", str(out), str(slip)]) == 0
    assert (out / "student" / "slip.ipynb").is_file()
    assert f"{slip}:9: warning: " in capsys.readouterr().err
