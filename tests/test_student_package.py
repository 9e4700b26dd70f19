"""The student package: its own wheel, with what a notebook imports and nothing of the grader's.

A fresh virtual environment gets only the student wheel (`dgm_labs_student-*.whl`, as
`make dist` builds it). Its kernel runs the mini lab's untouched release (the public checks
fail, saying "not implemented yet") and its full solution (they pass), and smoke-runs every
lab's release. The wheel's files are scanned for what must not be there: the instructor's
package, the checks only hidden tests call, the hidden thresholds, the reference solutions.
"""

import ast
import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from autograder import demo
from autograder.build import build
from autograder.template import read_template
from tests.conftest import ROOT

pytestmark = pytest.mark.slow
MINI = ROOT / "tests" / "templates" / "mini.md"
LABS = sorted((ROOT / "labs").glob("*.md"))
HIDDEN_CHECKS = ROOT / "autograder" / "hidden_checks"
HIDDEN_BARS = ROOT / "autograder" / "hidden"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The student wheel, built from student/ as `make dist` builds it."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
        + ["-w", str(out), str(ROOT / "student")],
        check=True,
        capture_output=True,
    )
    (found,) = out.glob("dgm_labs_student-*.whl")
    return found


@pytest.fixture(scope="module")
def fresh(tmp_path_factory, wheel) -> Path:
    """A new venv with only the student wheel installed. The heavy third-party packages it
    needs (torch, ipykernel...) come from this environment's site-packages as a plain path,
    whose .pth files are not run: neither this repository nor its editable installs are seen."""
    venv = tmp_path_factory.mktemp("fresh") / "venv"
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # nothing of ours
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=clean)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
        env=clean,
    )
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
        env=clean,
    ).stdout.strip()
    (Path(site) / "third_party.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


def kernelspec(venv: Path, root: Path) -> str:
    """A kernel of the fresh venv's Python, with no PYTHONPATH of ours."""
    spec = root / "kernels" / "fresh"
    spec.mkdir(parents=True, exist_ok=True)
    argv = [str(venv / "bin" / "python"), "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    env = {"PYTHONPATH": "", "PYTHONNOUSERSITE": "1", "MPLBACKEND": "agg"}
    spec.joinpath("kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "fresh", "language": "python", "env": env})
    )
    return "fresh"


def run(nb: nbformat.NotebookNode, where: Path, venv: Path, monkeypatch) -> nbformat.NotebookNode:
    """Execute in the fresh venv's kernel, first asking it where dgmlab and autograder are."""
    monkeypatch.setenv("JUPYTER_PATH", str(where))
    probe = nbformat.v4.new_code_cell(
        "import dgmlab, importlib.util\n"
        "print(dgmlab.__file__)\nprint(importlib.util.find_spec('autograder'))"
    )
    nb.cells.insert(0, probe)
    client = NotebookClient(
        nb,
        timeout=600,
        kernel_name=kernelspec(venv, where),
        allow_errors=True,
        resources={"metadata": {"path": str(where)}},
    )
    client.execute()
    printed = nb.cells[0].outputs[0]["text"].split("\n")
    assert printed[0].startswith(str(venv)), printed  # the wheel's dgmlab, not the repository's
    assert printed[1] == "None", printed  # and no grader at all
    return nb


def printed_by(cell: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") + o.get("evalue", "") for o in cell.get("outputs", []))


def graded(nb: nbformat.NotebookNode) -> dict[str, str]:
    """What each test cell printed or raised, by grade id."""
    return {
        c.metadata["nbgrader"]["grade_id"]: printed_by(c)
        for c in nb.cells
        if c.metadata.get("nbgrader", {}).get("grade")
        and c.cell_type == "code"
        and not c.metadata["nbgrader"].get("solution")
    }


def test_the_release_runs_and_self_checks_with_the_student_wheel_alone(
    fresh, tmp_path, monkeypatch
) -> None:
    assert build([MINI], tmp_path / "views") == []
    release = nbformat.read(tmp_path / "views" / "nbgrader" / "mini.ipynb", as_version=4)
    solution = nbformat.read(tmp_path / "views" / "solution" / "mini.ipynb", as_version=4)
    student = nbformat.read(tmp_path / "views" / "student" / "mini.ipynb", as_version=4)
    for cell, shown in zip(release.cells, student.cells, strict=True):
        cell.source = shown.source  # the release as students get it: stubs, no hidden tests
    for cell in release.cells:  # run every cell, the tests too (a student runs them all)
        cell.metadata.pop("tags", None)
    full = demo.fill(release, solution, {})
    untouched = run(release, tmp_path, fresh, monkeypatch)
    solved = run(full, tmp_path, fresh, monkeypatch)
    assert graded(solved) == {
        "reparameterize": "passed: check_reparameterization\n",
        "kl": "passed: check_kl_divergence\n",
    }
    for grade_id, shown in graded(untouched).items():
        assert "not implemented yet" in shown, (grade_id, shown)


def test_every_labs_release_runs_with_the_student_wheel_alone(fresh, tmp_path, monkeypatch) -> None:
    """The provided cells of each lab's release (nbconvert's smoke run: cells needing answers
    skipped), data included, in the fresh venv."""
    assert build(LABS, tmp_path / "views") == []
    for lab in LABS:
        nb = nbformat.read(tmp_path / "views" / "student" / f"{lab.stem}.ipynb", as_version=4)
        ran = run(nb, tmp_path, fresh, monkeypatch)
        errors = [o for c in ran.cells for o in c.get("outputs", []) if o.output_type == "error"]
        assert errors == [], (lab.stem, errors[:1])


def installed_text(wheel: Path) -> dict[str, str]:
    with zipfile.ZipFile(wheel) as archive:
        return {n: archive.read(n).decode("utf-8", "replace") for n in archive.namelist()}


def test_the_wheel_holds_no_grader_hidden_check_threshold_or_solution(wheel) -> None:
    files = installed_text(wheel)
    assert {name.split("/")[0] for name in files} == {
        "dgmlab",
        wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info",
    }
    assert not any(n.endswith(".ipynb") or "hidden" in n or "solution" in n for n in files)
    text = "\n".join(files.values())
    # the checks only hidden tests call
    hidden_checks = {
        node.name
        for path in HIDDEN_CHECKS.glob("*.py")
        for node in ast.parse(path.read_text()).body
        if isinstance(node, ast.FunctionDef) and node.name.startswith("check_")
    }
    assert len(hidden_checks) == 7
    assert not [name for name in hidden_checks if name in text]
    # the hidden thresholds: every float the hidden modules define
    bars = {
        float(node.value)
        for path in HIDDEN_BARS.glob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and isinstance(node.value, float)
    }
    assert len(bars) == 5
    shipped = {
        float(node.value)
        for name, source in files.items()
        if name.endswith(".py")
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Constant) and isinstance(node.value, float)
    }
    assert bars.isdisjoint(shipped), bars & shipped
    # the reference solutions: no region of any lab, as consecutive lines, in any file
    normalised = "\n".join(line.strip() for line in text.split("\n"))
    regions = [
        "\n".join(s for line in region.body if (s := line.text.strip()))
        for lab in LABS
        for cell in read_template(lab).cells
        for region in cell.regions
        if not region.hidden and sum(1 for line in region.body if line.text.strip()) >= 2
    ]
    assert len(regions) >= 30  # the labs hold 34 regions of two lines or more
    assert not [r for r in regions if r in normalised]


def test_the_instructor_package_declares_the_student_package() -> None:
    import tomllib

    instructor = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    student = tomllib.loads((ROOT / "student" / "pyproject.toml").read_text())["project"]
    assert f"{student['name']}=={student['version']}" in instructor["dependencies"]
    assert os.path.isdir(ROOT / "student" / "dgmlab" / "checks")
    assert not (ROOT / "autograder" / "checks").exists()
