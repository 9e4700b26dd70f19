"""Gradescope: an autograder zip for a released lab, and the grading run inside Gradescope.

`autograder gradescope LAB` writes a zip laid out as Gradescope's autograder specification asks
(gradescope-autograders.readthedocs.io/en/latest/specs/): `setup.sh` and `run_autograder` at its
root. Gradescope unpacks the zip to /autograder/source, runs setup.sh once when it builds the
image (here: Python, the pinned dependencies and the wheels of this package, from the zip, into
/autograder/venv), copies run_autograder to /autograder/run_autograder and runs that once per
submission. It grades /autograder/submission/*.ipynb with the grader of `autograder autograde`
(worker.run: the lab's nbgrader source with its hidden tests, the release, MNIST, all from the
zip) and writes /autograder/results/results.json, whatever went wrong.

Without the sandbox (bubblewrap seldom runs in Gradescope's containers) the grader, root there,
starts the student's kernel as an unprivileged user and first makes what only it may touch
root's alone: /autograder/source (hidden tests, full MNIST) and /autograder/results.

`GRADESCOPE_ROOT` (default /autograder) moves the whole layout, so that a test lays out
Gradescope's directories in a temporary folder and runs the zip's run_autograder there.

One module, as the bundle and the run share the layout, the configuration and the results'
format; `validate` is the specification's results.json as a checker, for tests and scripts.
"""

import contextlib
import importlib.metadata as metadata
import json
import math
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import traceback
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import nbformat
import psutil
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from autograder import batch, job, sandbox, worker
from dgmlab.data import FILES, data_dir, mnist_present, raw_dir

ROOT_ENV = "GRADESCOPE_ROOT"
DEFAULT_ROOT = "/autograder"
DISTRIBUTION = "dgm-labs"  # this package; its `lab` extra holds what the labs' kernels import
EXTRAS = frozenset({"lab"})
TORCH = ("torch", "torchvision")  # installed as a pair from one index, before the rest
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
SANDBOX_MODES = ("off", "auto", "on")
RESERVE_S = 90  # of Gradescope's time limit: starting Python, judging, writing the results
CONFIG = "autograder.json"
METADATA = "submission_metadata.json"  # Gradescope's: the submitters, their earlier results
# How the student's code was kept from the grader's files (results.json says which).
SANDBOXED, UNPRIVILEGED, UNISOLATED = "sandbox", "unprivileged user, no sandbox", "none"
STUDENT = "gradescope"  # the grader's name for the one submission a container grades
# What a project's copy leaves out before its wheel is built (setuptools builds in the tree).
NOT_SOURCES = (".git", ".venv", "venv", "build", "dist", "notebooks", "*.egg-info", "__pycache__")
NOT_SOURCES += (".pytest_cache", ".ruff_cache", "node_modules")

VISIBILITIES = ("hidden", "after_due_date", "after_published", "visible")
FORMATS = ("text", "html", "simple_format", "md", "ansi")
STATUSES = ("passed", "failed")


class BundleError(ValueError):
    """A lab cannot be bundled for Gradescope: what is wrong, and what was expected."""


# ---------------------------------------------------------------- results.json


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _shown(value: object) -> str:
    text = json.dumps(value) if isinstance(value, str | int | float | bool | None) else None
    return text[:60] if text is not None else type(value).__name__


def _one_of(options: tuple[str, ...]) -> tuple:
    return (lambda v: v in options, "one of " + ", ".join(options))


# A field's kind -> (its test, what the test expects).
KINDS = {
    "number": (lambda v: _number(v) and v >= 0, "a number >= 0"),
    "text": (lambda v: isinstance(v, str), "a string"),
    "name": (lambda v: isinstance(v, str) and v.strip() != "", "a non-empty string"),
    "visibility": _one_of(VISIBILITIES),
    "format": _one_of(FORMATS),
    "status": _one_of(STATUSES),
    "object": (lambda v: isinstance(v, dict), "an object"),
    "list": (lambda v: isinstance(v, list), "a list"),
    "tags": (lambda v: isinstance(v, list) and all(isinstance(t, str) for t in v), "strings"),
}


TOP_FIELDS = {
    "score": "number",
    "execution_time": "number",
    "output": "text",
    "output_format": "format",
    "test_output_format": "format",
    "test_name_format": "format",
    "visibility": "visibility",
    "stdout_visibility": "visibility",
    "extra_data": "object",
    "tests": "list",
    "leaderboard": "list",
}
# The specification's test fields, and execution_time: this grader times each test.
TEST_FIELDS = {
    "score": "number",
    "max_score": "number",
    "status": "status",
    "name": "name",
    "name_format": "format",
    "number": "text",
    "output": "text",
    "output_format": "format",
    "tags": "tags",
    "visibility": "visibility",
    "extra_data": "object",
    "execution_time": "number",
}
# Optional in the specification; this grader always writes them.
TOP_REQUIRED = ("score", "execution_time", "output", "output_format", "visibility")
TOP_REQUIRED += ("stdout_visibility", "tests")
TEST_REQUIRED = ("name", "score", "max_score", "status", "visibility", "output", "output_format")
TEST_REQUIRED += ("execution_time",)


def _field_problems(doc: dict, where: str, fields: dict, required: tuple) -> list[str]:
    problems = [f'{where or "results"}: missing "{key}"' for key in required if key not in doc]
    for key, value in doc.items():
        if key not in fields:
            problems.append(f'{where or "results"}: unknown field "{key}"')
            continue
        test, expected = KINDS[fields[key]]
        if not test(value):
            name = f"{where}.{key}" if where else key
            problems.append(f"{name}: expected {expected}, got {_shown(value)}")
    return problems


def validate(doc: object) -> list[str]:
    """Every way `doc` departs from Gradescope's results.json as this grader writes it (the
    specification's fields and types, with the fields it leaves optional required, scores
    within their maximum, the total the sum of the tests'): [] when it conforms."""
    if not isinstance(doc, dict):
        return [f"results: expected an object, got {_shown(doc)}"]
    problems = _field_problems(doc, "", TOP_FIELDS, TOP_REQUIRED)
    tests = doc.get("tests")
    if not isinstance(tests, list):
        return problems
    for index, test in enumerate(tests):
        where = f"tests[{index}]"
        if not isinstance(test, dict):
            problems.append(f"{where}: expected an object, got {_shown(test)}")
            continue
        problems += _field_problems(test, where, TEST_FIELDS, TEST_REQUIRED)
        score, top = test.get("score"), test.get("max_score")
        if _number(score) and _number(top) and score > top:
            problems.append(f"{where}.score: expected at most max_score {top:g}, got {score:g}")
    scores = [t.get("score") if isinstance(t, dict) else None for t in tests]
    if _number(doc.get("score")) and all(_number(s) for s in scores):
        if not math.isclose(doc["score"], sum(scores), abs_tol=1e-9):
            problems.append(
                f"score: expected the sum of the tests' scores, {sum(scores):g}, got {doc['score']:g}"
            )
    return problems


@dataclass(frozen=True)
class Graded:
    """A graded cell of the release as Gradescope shows it."""

    grade_id: str
    points: float
    manual: bool
    hidden: bool  # a test cell with hidden checks: nbgrader's release left them out


def graded_cells(source: nbformat.NotebookNode, release: nbformat.NotebookNode) -> list[Graded]:
    """The graded cells of the release, in order; a test is hidden where the source's cell
    (with the hidden tests) differs from the release's."""
    sources = {job.grade_id(c): c.source for c in source.cells if job.grade_id(c)}
    cells = []
    for cell in release.cells:
        role, gid = job.role_of(cell), job.grade_id(cell)
        if role in ("test", "manual") and gid is not None:
            points = float(cell.metadata["nbgrader"]["points"])
            hidden = role == "test" and sources.get(gid, cell.source) != cell.source
            cells.append(Graded(gid, points, role == "manual", hidden))
    return cells


HIDDEN_CHECK = re.compile(r"^(passed|failed): hidden test \d+")
CHECK_LINE = re.compile(r"^(passed|failed): ")
HINT_LINE = "hint: "  # job.with_hints: the lab's hints, after a failed test's checks
WHOLE_TEST = ("judged in the kernel: ",)  # lines about the cell, hidden statements included


def public_part(message: str) -> list[str]:
    """The lines of a test's message about its public checks. Each check's block starts with
    `passed: ` or `failed: ` (a hidden check's names it `hidden test N`) and runs to the next;
    the lab's hints follow only a failed public check (else they would tell that a hidden one
    failed)."""
    kept, hints, keep = [], [], False
    for line in message.splitlines():
        if CHECK_LINE.match(line):
            keep = not HIDDEN_CHECK.match(line)
        elif line.startswith(HINT_LINE):
            hints.append(line)
            continue
        elif line.startswith(WHOLE_TEST):
            keep = False
        if keep:
            kept.append(line)
    failed = any(line.startswith("failed: ") for line in kept)
    return kept + (hints if failed else [])


def entry(
    name: str,
    score: float,
    top: float,
    output: str,
    visibility: str,
    seconds: float,
    status: str | None = None,
) -> dict:
    """One test of results.json; passed when it earned its points (unless told)."""
    return {
        "name": name,
        "score": score,
        "max_score": top,
        "status": status or ("passed" if top > 0 and score >= top else "failed"),
        "visibility": visibility,
        "output": output,
        "output_format": "text",  # never rendered: messages quote the student's own code
        "execution_time": round(seconds, 2),
    }


def points(value: float) -> str:
    return f"{value:g} point" + ("" if value == 1 else "s")


def test_entries(test: job.TestResult, cell: Graded, seconds: float, failed: bool) -> list[dict]:
    """The results.json tests of one graded cell (see docs/gradescope.md)."""
    if cell.manual:
        answered = test.score is None and not failed
        note = f"Graded by hand on Gradescope ({points(cell.points)}), not by the autograder"
        state = "an answer was given" if answered else "no answer to grade"
        status = "passed" if answered else "failed"
        return [entry(test.grade_id, 0.0, 0.0, f"{note}: {state}.", "visible", 0.0, status)]
    score = float(test.score or 0.0)
    if not cell.hidden:
        return [entry(test.grade_id, score, test.max_score, test.message, "visible", seconds)]
    # The points depend on the hidden checks: they show when the grades are published; the
    # public checks' outcome shows at once, as in the student's own notebook.
    scored = entry(test.grade_id, score, test.max_score, test.message, "after_published", seconds)
    public = public_part(test.message)
    if not public:
        return [scored]
    status = "failed" if any(line.startswith("failed: ") for line in public) else "passed"
    name = f"{test.grade_id} (public checks)"
    return [entry(name, 0.0, 0.0, "\n".join(public), "visible", seconds, status), scored]


def results_document(
    lab: str,
    result: job.JobResult,
    cells: list[Graded],
    seconds: float,
    isolation: str | None = None,
) -> dict:
    """results.json of a graded submission; `isolation` one of SANDBOXED, UNPRIVILEGED and
    UNISOLATED (default: as result.sandboxed says)."""
    isolation = isolation or (SANDBOXED if result.sandboxed else UNISOLATED)
    by_id = {c.grade_id: c for c in cells}
    tests = []
    for test in result.tests:
        cell = by_id.get(test.grade_id, Graded(test.grade_id, test.max_score, False, False))
        failed = result.error is not None
        tests += test_entries(test, cell, test.seconds, failed)
    lines = [f"The submission could not be graded: {result.error}"] if result.error else []
    lines += [f"The run stopped in {result.stopped}"] if result.stopped else []
    if any(t["visibility"] == "after_published" for t in tests):
        lines.append("Tests with hidden checks show their points when the grades are published.")
    manual = sum(c.points for c in cells if c.manual)
    if manual:
        lines.append(f"{points(manual)} of this lab graded by hand on Gradescope, not here.")
    lines += [n for n in result.notes if "WITHOUT the sandbox" not in n]
    if result.error is None:
        lines.append(f"Isolation: {isolation}.")
    return {
        "score": sum(t["score"] for t in tests),
        "execution_time": round(seconds, 1),
        "output": "\n".join(lines),
        "output_format": "text",
        "visibility": "visible",
        "stdout_visibility": "hidden",  # the grader's log, for the instructor
        "extra_data": {
            "lab": lab,
            "max_score": sum(t["max_score"] for t in tests),
            "manual_points": manual,
            "sandbox": result.sandboxed,
            "isolation": isolation,
            "grader": f"{DISTRIBUTION} {metadata.version(DISTRIBUTION)}",
        },
        "tests": tests,
    }


# ---------------------------------------------------------------- the zip


def lab_notebooks(course: Path, lab: str) -> tuple[Path, Path]:
    """The lab's nbgrader source (with the hidden tests) and its release in the course."""
    source = course / "source" / lab / f"{lab}.ipynb"
    release = course / "release" / lab / f"{lab}.ipynb"
    for path, what in ((source, "source"), (release, "release")):
        if not path.is_file():
            released = sorted(p.parent.name for p in course.glob("release/*/*.ipynb"))
            known = ", ".join(released) or "none"
            raise BundleError(
                f"{path}: no {what} of lab {lab!r} (expected a lab released with "
                f"`autograder release --course {course}`; released labs: {known})"
            )
    return source, release


def closure(name: str, extras: frozenset[str]) -> dict[str, metadata.Distribution]:
    """The installed distributions `name[extras]` needs, by canonical name; torch and
    torchvision are not followed (their own index brings what they need)."""
    found: dict[str, metadata.Distribution] = {}
    todo, seen = [(name, extras, None)], set()
    while todo:
        current, wanted, needed_by = todo.pop()
        key = canonicalize_name(current)
        if (key, wanted) in seen:
            continue
        seen.add((key, wanted))
        try:
            found[key] = dist = installed(current)
        except metadata.PackageNotFoundError:
            raise BundleError(
                f"{current}: required by {needed_by} but not installed here (expected the "
                f'environment of `make install`: pip install -e ".[lab]")'
            ) from None
        if key in TORCH:
            continue
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in {"", *wanted}):
                todo.append((req.name, frozenset(req.extras), dist.metadata["Name"]))
    return found


def installed(name: str) -> metadata.Distribution:
    """The distribution installed in this environment's site-packages (not an egg-info that
    a build left in the working directory, which is on sys.path too)."""
    paths = list(dict.fromkeys(sysconfig.get_path(p) for p in ("purelib", "platlib")))
    for dist in metadata.distributions(name=name, path=paths):
        return dist
    raise metadata.PackageNotFoundError(name)


def local_origin(dist: metadata.Distribution) -> Path | None:
    """The directory or wheel file a distribution was installed from, if it was local."""
    text = dist.read_text("direct_url.json")
    if not text:
        return None
    origin = json.loads(text)
    url = urllib.parse.urlparse(origin.get("url", ""))
    if url.scheme != "file":
        return None
    path = Path(urllib.request.url2pathname(url.path))
    if "dir_info" in origin or path.suffix == ".whl":
        return path
    return None


def build_wheel(project: Path, target: Path) -> Path:
    """A wheel of the project directory, built from a copy (setuptools writes into the tree)."""
    with tempfile.TemporaryDirectory(prefix="gradescope-wheel-") as tmp:
        copy = Path(tmp) / "project"
        shutil.copytree(project, copy, ignore=shutil.ignore_patterns(*NOT_SOURCES))
        wheels = Path(tmp) / "wheels"
        command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
        command += ["--quiet", "--wheel-dir", str(wheels), str(copy)]
        done = subprocess.run(command, capture_output=True, text=True)
        built = sorted(wheels.glob("*.whl"))
        if done.returncode != 0 or len(built) != 1:
            raise BundleError(
                f"{project}: pip wheel failed (expected one wheel of the project):\n"
                f"{done.stderr[-2000:]}"
            )
        target.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy2(built[0], target / built[0].name))


def wheels_and_pins(target: Path) -> tuple[list[Path], list[str]]:
    """The wheels of every distribution of the grader installed from here (this repository,
    built afresh) and `name==version` of the rest, as installed in this environment."""
    wheels, pins = [], []
    for key, dist in sorted(closure(DISTRIBUTION, EXTRAS).items()):
        origin = local_origin(dist)
        if origin is None:
            if key not in TORCH:
                pins.append(f"{dist.metadata['Name']}=={dist.version}")
        elif origin.suffix == ".whl":
            wheels.append(Path(shutil.copy2(origin, target / origin.name)))
        else:
            wheels.append(build_wheel(origin, target))
    return wheels, pins


def mnist_members(root: Path) -> dict[str, Path]:
    """The four raw MNIST files under `root`, by their name in the zip."""
    if not mnist_present(root):
        raise BundleError(
            f"{raw_dir(root)}: expected the four MNIST raw files at their sizes "
            f"(make data, or python -m dgmlab.data --root {root})"
        )
    return {f"data/MNIST/raw/{name}": raw_dir(root) / name for name in FILES}


SETUP = """\
#!/usr/bin/env bash
# Made by `autograder gradescope` (@GRADER@) for lab @LAB@. Gradescope runs this once, as root,
# when it builds the autograder's image: Python @PYTHON_VERSION@, the grader and its pinned
# dependencies into $ROOT/venv, all from this zip but for the packages' index.
set -euo pipefail
ROOT="${GRADESCOPE_ROOT:-/autograder}"
SOURCE="$ROOT/source"
PYTHON=python@PYTHON_VERSION@
export DEBIAN_FRONTEND=noninteractive
if ! command -v "$PYTHON" >/dev/null || ! "$PYTHON" -c "import ensurepip, venv" 2>/dev/null; then
    apt-get update -q
    apt-get install -y -q "$PYTHON" "$PYTHON-venv" \\
        || { echo "setup.sh: expected $PYTHON, the Python the zip was made with" >&2; exit 1; }
fi
@BUBBLEWRAP@
"$PYTHON" -m venv "$ROOT/venv"
PIP=("$ROOT/venv/bin/python" -m pip --disable-pip-version-check --no-input)
"${PIP[@]}" install -q --upgrade pip
# torch and torchvision as a pair from one index: a torch of one index and a torchvision of
# another do not load together. Where PyTorch's CPU index lacks the pinned pair (or cannot be
# reached), both come from PyPI: larger wheels, the same versions.
"${PIP[@]}" install -q @TORCH_INDEX@@TORCH_PINS@ \
    || { echo "setup.sh: torch from PyPI instead" >&2; "${PIP[@]}" install -q @TORCH_PINS@; }
"${PIP[@]}" install -q -r "$SOURCE/requirements.txt" @WHEELS@
"$ROOT/venv/bin/python" -c "import autograder.gradescope, torch, torchvision, nbgrader"
chmod +x "$SOURCE/run_autograder"
"""

RUN_AUTOGRADER = """\
#!/usr/bin/env bash
# Made by `autograder gradescope` (@GRADER@) for lab @LAB@. Gradescope runs a copy of this
# file, /autograder/run_autograder, once per submission: it grades the notebook in
# $ROOT/submission and writes $ROOT/results/results.json.
ROOT="${GRADESCOPE_ROOT:-/autograder}"
export GRADESCOPE_ROOT="$ROOT"
cd "$ROOT" || exit 1
"$ROOT/venv/bin/python" -m autograder.gradescope
status=$?
if [ ! -s "$ROOT/results/results.json" ]; then
    # The grader did not start or died: Gradescope still gets a results.json that says so.
    mkdir -p "$ROOT/results"
    cat > "$ROOT/results/results.json" <<EOF
{"score": 0, "execution_time": 0, "output_format": "text", "visibility": "visible",
 "stdout_visibility": "hidden", "tests": [],
 "output": "The autograder could not run (exit status $status): the instructor sees why in its log."}
EOF
fi
exit 0
"""


def render(template: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        template = template.replace(f"@{key}@", value)
    return template


def setup_script(lab: str, wheels: list[Path], sandbox_mode: str, torch_index: str) -> str:
    """setup.sh: naming the zip's wheels, its requirements and torch's pins one by one."""
    pins = [f"{name}=={metadata.version(name).split('+')[0]}" for name in TORCH]
    ours = DISTRIBUTION.replace("-", "_") + "-"
    extras = "[" + ",".join(sorted(EXTRAS)) + "]"
    names = [
        f'"$SOURCE/wheels/{w.name}{extras if w.name.startswith(ours) else ""}"' for w in wheels
    ]
    apt = "apt-get install -y -q bubblewrap  # the sandbox (--sandbox " + sandbox_mode + ")"
    return render(
        SETUP,
        {
            "GRADER": grader_name(),
            "LAB": lab,
            "PYTHON_VERSION": f"{sys.version_info.major}.{sys.version_info.minor}",
            "BUBBLEWRAP": apt if sandbox_mode != "off" else "# no sandbox (--sandbox off)",
            "TORCH_INDEX": f"--index-url {torch_index} " if torch_index else "",
            "TORCH_PINS": " ".join(pins),
            "WHEELS": " ".join(names),
        },
    )


def grader_name() -> str:
    return f"{DISTRIBUTION} {metadata.version(DISTRIBUTION)}"


def bundle_config(lab: str, cells: list[Graded], sandbox_mode: str, time_limit: int) -> dict:
    """autograder.json: how run_autograder grades (time limits within Gradescope's)."""
    if sandbox_mode not in SANDBOX_MODES:
        raise BundleError(f"--sandbox {sandbox_mode}: expected one of {', '.join(SANDBOX_MODES)}")
    if time_limit < 3:
        raise BundleError(
            f"--time-limit {time_limit}: expected at least 3 minutes (the assignment's "
            "autograder timeout on Gradescope; its default is 10)"
        )
    limit = time_limit * 60 - RESERVE_S
    return {
        "lab": lab,
        "grader": grader_name(),
        "sandbox": sandbox_mode,
        "time_limit_min": time_limit,
        "submission_timeout": limit,
        "cell_timeout": limit,
        "threads": os.environ.get("AUTOGRADER_THREADS", "1"),
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        "autograded_points": sum(c.points for c in cells if not c.manual),
        "manual_points": sum(c.points for c in cells if c.manual),
    }


def bundle(
    lab: str,
    course: Path,
    out: Path | None = None,
    *,
    sandbox_mode: str = "off",
    time_limit: int = 10,
    torch_index: str = TORCH_CPU_INDEX,
    data_root: Path | None = None,
) -> Path:
    """Write the Gradescope autograder zip of a released lab; return its path. Everything is
    checked before anything is written, and the zip replaces `out` only when complete."""
    source, release = lab_notebooks(course, lab)
    cells = graded_cells(worker.read_notebook(source), worker.read_notebook(release))
    config = bundle_config(lab, cells, sandbox_mode, time_limit)
    data = mnist_members(data_root or data_dir())
    out = out or Path("build") / "gradescope" / f"{lab}.zip"
    with tempfile.TemporaryDirectory(prefix="gradescope-") as tmp:
        wheels, pins = wheels_and_pins(Path(tmp))
        texts = {
            "setup.sh": setup_script(lab, wheels, sandbox_mode, torch_index),
            "run_autograder": render(RUN_AUTOGRADER, {"GRADER": grader_name(), "LAB": lab}),
            CONFIG: json.dumps(config, indent=2) + "\n",
            "requirements.txt": "\n".join(pins) + "\n",
        }
        files = {f"wheels/{w.name}": w for w in wheels} | data
        files |= {f"lab/source/{lab}.ipynb": source, f"lab/release/{lab}.ipynb": release}
        write_zip(out, texts, files)
    return out


def write_zip(out: Path, texts: dict[str, str], files: dict[str, Path]) -> None:
    """The zip, scripts executable, written beside `out` and renamed onto it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.{os.getpid()}.partial")
    try:
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, text in texts.items():
                info = zipfile.ZipInfo(name, date_time=time.localtime()[:6])
                mode = 0o755 if name in ("setup.sh", "run_autograder") else 0o644
                info.external_attr = (0o100000 | mode) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, text)
            for name, path in files.items():
                archive.write(path, name)
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)


# ---------------------------------------------------------------- the run, inside Gradescope


def gradescope_root() -> Path:
    return Path(os.environ.get(ROOT_ENV) or DEFAULT_ROOT)


def find_notebook(folder: Path, lab: str) -> tuple[Path | None, list[str], str | None]:
    """The submitted notebook: LAB.ipynb (the shallowest), else the only notebook; the other
    notebooks (ignored); or why none can be graded."""
    notebooks, files = [], []
    for top, dirs, names in os.walk(folder):  # links are not followed
        dirs[:] = [d for d in dirs if d not in (".ipynb_checkpoints", "__MACOSX")]
        for name in names:
            path = Path(top) / name
            if not path.is_symlink():
                files.append(path.relative_to(folder).as_posix())
                if name.endswith(".ipynb") and not name.startswith("._"):
                    notebooks.append(path)
    named = sorted((p for p in notebooks if p.name == f"{lab}.ipynb"), key=lambda p: len(p.parts))
    chosen = named[0] if named else notebooks[0] if len(notebooks) == 1 else None
    if chosen is None:
        shown = ", ".join(sorted(files)[:10]) or "nothing"
        why = (
            f"{len(notebooks)} notebooks and none named {lab}.ipynb"
            if notebooks
            else "no notebook (.ipynb)"
        )
        return None, [], f"{why} in the submission (it holds: {shown}): upload {lab}.ipynb"
    others = sorted(p.relative_to(folder).as_posix() for p in notebooks if p != chosen)
    return chosen, others, None


def sandbox_decision(mode: str) -> tuple[bool, str | None]:
    """(grade in the sandbox?, why the submission cannot be graded at all)."""
    if mode == "off":
        return False, None
    if sandbox.available():
        return True, None
    if mode == "auto":
        return False, None
    return False, (
        "the autograder requires the sandbox (autograder gradescope --sandbox on), but "
        "bubblewrap cannot create namespaces in this container (rebuild the zip with "
        "--sandbox auto or off)"
    )


def isolation_without_sandbox() -> str:
    """UNPRIVILEGED where the grader is root and the kernel can run as the sandbox user with
    the worker's library and data copies, else UNISOLATED (the reason goes to the log)."""
    library, data = worker.machine_files()
    problem = sandbox.unprivileged_problem(sandbox.SANDBOX_UID, [library, data])
    if problem is None:
        return UNPRIVILEGED
    print(f"grading with no isolation: {problem}", file=sys.stderr)
    return UNISOLATED


def protect_layout(root: Path) -> None:
    """Before an unprivileged kernel starts: source/ (the hidden tests, the full MNIST, the
    zip) root's alone, results/ root's and read-only to others, Gradescope's metadata (the
    submitters' names and emails, earlier results) root's alone, and the root itself not
    writable by others (results/ could be renamed away, `python -m` imports from it)."""
    (root / "results").mkdir(exist_ok=True)
    modes = {"source": 0o700, "results": 0o755, METADATA: 0o600}
    for name, mode in modes.items():
        path = root / name
        if path.exists():
            os.chown(path, 0, 0)
            path.chmod(mode)
    root.chmod(root.stat().st_mode & 0o7755)


def not_graded(release: nbformat.NotebookNode, why: str) -> job.JobResult:
    """A submission that cannot be graded: every test at 0 with the reason."""
    return job.JobResult(None, job.zero_scores(release, why), error=why)


def grade_here(root: Path, started: float) -> dict:
    """Grade the submission under `root` as worker.run grades one for `autograder autograde`."""
    source_dir = root / "source"
    config = json.loads((source_dir / CONFIG).read_text())
    lab = config["lab"]
    source_path = source_dir / "lab" / "source" / f"{lab}.ipynb"
    source = worker.read_notebook(source_path)
    release = worker.read_notebook(source_dir / "lab" / "release" / f"{lab}.ipynb")
    cells = graded_cells(source, release)
    os.environ["DGM_DATA"] = str(source_dir / "data")  # the zip's MNIST, whatever is set
    use_sandbox, refusal = sandbox_decision(config["sandbox"])
    notebook, others, missing = find_notebook(root / "submission", lab)
    isolation = SANDBOXED if use_sandbox else UNISOLATED
    if refusal or missing:
        result = not_graded(release, refusal or missing)
        result.sandboxed = use_sandbox
    else:
        submission = notebook.read_bytes()
        if not use_sandbox:
            isolation = isolation_without_sandbox()
        if isolation == UNPRIVILEGED:
            protect_layout(root)
        policy = worker.Policy(
            use_sandbox=use_sandbox,
            cell_timeout=config["cell_timeout"],
            submission_timeout=config["submission_timeout"],
            retries=0,  # a second run would overrun Gradescope's time limit
            threads=config["threads"],
            drop_privileges=isolation == UNPRIVILEGED,
        )
        digest = batch.digest(submission, source_path.read_bytes())
        task = worker.Task(STUDENT, lab, source, release, submission, digest, tuple(others), policy)
        result = worker.run(task).result
    return results_document(lab, result, cells, time.monotonic() - started, isolation)


def failure_document(root: Path, why: str, started: float) -> dict:
    """results.json when grading itself failed: the lab's tests at 0 if it can be read."""
    result = job.JobResult(None, [], error=why)
    lab, cells = "?", []
    with contextlib.suppress(Exception):
        lab = json.loads((root / "source" / CONFIG).read_text())["lab"]
        release = worker.read_notebook(root / "source" / "lab" / "release" / f"{lab}.ipynb")
        source = worker.read_notebook(root / "source" / "lab" / "source" / f"{lab}.ipynb")
        result, cells = not_graded(release, why), graded_cells(source, release)
    return results_document(lab, result, cells, time.monotonic() - started)


def write_results(root: Path, document: dict) -> Path:
    """results/results.json, replaced whole."""
    target = root / "results" / "results.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(".results.json.partial")
    partial.write_text(json.dumps(document, indent=2) + "\n")
    os.replace(partial, target)
    return target


def main() -> int:
    """run_autograder's grader: results.json is written whatever happens."""
    root = gradescope_root()
    # the run's time from the start of this process: importing torch and the rest counts
    started = time.monotonic() - (time.time() - psutil.Process().create_time())
    try:
        document = grade_here(root, started)
    except Exception as exc:  # the submission still gets a results.json that says why
        traceback.print_exc()
        document = failure_document(root, f"the autograder failed: {type(exc).__name__}", started)
    path = write_results(root, document)
    for test in document["tests"]:
        print(f"{test['score']:>6g} / {test['max_score']:<6g} {test['status']:<7} {test['name']}")
    print(f"score {document['score']:g}; {path}\n{document['output']}")
    return 0


# ---------------------------------------------------------------- Gradescope's layout, simulated


def simulate(
    zip_path: Path, root: Path, submission: dict[str, bytes], python: Path | None = None
) -> tuple[dict, str]:
    """Lay out Gradescope's directories under `root` as its harness does and run the zip's
    run_autograder there: source/ unpacked (modes kept, as unzip does), run_autograder copied
    to the root, submission/ holding `submission` (name -> bytes), an empty results/ that
    anyone may write (the harness's modes are not documented: the grader must not count on
    them), and venv/bin/python running `python` (default: this interpreter) in place of
    setup.sh's. Return results.json and run_autograder's output."""
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(root / "source")
        for info in archive.infolist():
            if mode := (info.external_attr >> 16) & 0o777:
                (root / "source" / info.filename).chmod(mode)
    shutil.copy2(root / "source" / "run_autograder", root / "run_autograder")
    for name, content in submission.items():
        (root / "submission" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "submission" / name).write_bytes(content)
    (root / "submission").mkdir(exist_ok=True)
    (root / "results").mkdir(exist_ok=True)
    (root / "results").chmod(0o777)
    venv_python = root / "venv" / "bin" / "python"
    venv_python.parent.mkdir(parents=True, exist_ok=True)
    venv_python.write_text(f'#!/bin/sh\nexec "{python or sys.executable}" "$@"\n')
    venv_python.chmod(0o755)
    env = {**os.environ, ROOT_ENV: str(root)}
    done = subprocess.run(
        [str(root / "run_autograder")], cwd=root, env=env, capture_output=True, text=True
    )
    log = done.stdout + done.stderr
    return json.loads((root / "results" / "results.json").read_text()), log


if __name__ == "__main__":
    sys.exit(main())
