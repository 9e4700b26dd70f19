"""Grading one submission as a pure job: (source, release, submission, secret) in, scores out.

1. `assemble`: the notebook that runs is the instructor's release with the student's answers
   put in. Graded and locked cells come from the instructor (tests with their hidden part),
   found by grade id or, where the submission lost its metadata, by their exact source; the
   student's own cells are kept in their place; no metadata or tag of the submission is used.
2. `run`: a kernel in the sandbox runs every code cell; just before a test cell the grader
   writes its challenge, and the kernel's checks write evidence (dgmlab.checks.evidence).
   A crash, a timeout or the submission limit stops the run; what ran before still counts.
3. `verdict.judge` decides every check call in this process, from the evidence; the job
   returns per-test points and messages, and the notebook nbgrader's feedback shows, whose test
   cells show the release's source (never the hidden tests) and the verdicts.
This process parses the kernel's messages and reads evidence files; it runs no student code.
"""

import copy
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError
from nbclient.util import run_sync
from nbformat import NotebookNode

from autograder import sandbox, verdict
from dgmlab.checks import evidence
from dgmlab.checks.grading import GRADING_ENV, SALT_ENV

WARNING = re.compile(r"\w*Warning: ")  # nbgrader's IgnorePattern of the course, for stderr
MAX_OUTPUT_BYTES = 1 << 20  # a cell's kept output; the rest is dropped (100 MB of prints)


@dataclass
class Settings:
    """How a job runs: time limits, the sandbox's library and data, threads, limits."""

    library: Path
    data: Path
    cell_timeout: float = 600
    submission_timeout: float = 1800
    use_sandbox: bool = True
    threads: str = "1"
    limits: sandbox.Limits = field(default_factory=sandbox.Limits)
    scratch_mb: int = 2048  # what a notebook may write in all
    uid: int = sandbox.SANDBOX_UID  # as root: the user the kernel runs as (one per slot)
    cuda_devices: str | None = None  # the kernel's CUDA_VISIBLE_DEVICES; None: every device
    drop_privileges: bool = False  # unsandboxed, as root: the kernel runs as `uid` all the same


@dataclass
class Cell:
    """A cell of the graded notebook: what runs, what the feedback shows, and its role."""

    shown: NotebookNode
    role: str  # "answer", "test", "locked", "manual" or "student"
    run_source: str = ""
    grade_id: str | None = None
    answered: bool = False  # an answer cell the student changed from the release


@dataclass
class TestResult:
    """The points of one graded cell and what the student is told."""

    grade_id: str
    score: float | None  # None: a manually graded answer
    max_score: float
    message: str
    judged_in_kernel: bool = False
    seconds: float = 0.0  # how long its cell ran (0: it did not run)


@dataclass
class JobResult:
    """Everything the coordinator records of one graded submission."""

    notebook: NotebookNode | None
    tests: list[TestResult]
    error: str | None = None  # the submission could not be graded at all
    stopped: str | None = None  # which cell stopped the run, and why
    timed_out: bool = False
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0  # wall time of grading, retries included
    sandboxed: bool = True


# ---------------------------------------------------------------- 1. assemble


def grade_id(cell: NotebookNode) -> str | None:
    """The cell's nbgrader grade id, if it has a well-formed one."""
    meta = cell.get("metadata", {}) if isinstance(cell, dict) else {}
    nb_meta = meta.get("nbgrader", {}) if isinstance(meta, dict) else {}
    value = nb_meta.get("grade_id") if isinstance(nb_meta, dict) else None
    return value if isinstance(value, str) else None


def source_of(cell: NotebookNode) -> str:
    """A submitted cell's source as one string, whatever shape the JSON gave it."""
    source = cell.get("source", "") if isinstance(cell, dict) else ""
    if isinstance(source, list):
        return "".join(s for s in source if isinstance(s, str))
    return source if isinstance(source, str) else ""


def role_of(cell: NotebookNode) -> str:
    """The role of a cell of the release, from the instructor's metadata."""
    meta = cell.metadata.get("nbgrader", {})
    if meta.get("solution"):
        return "manual" if meta.get("grade") else "answer"
    if meta.get("grade"):
        return "test"
    return "locked" if meta.get("locked") else "provided"


def student_cell(cell: dict) -> Cell | None:
    """A cell the student added or kept, without its metadata; None if it is not a cell."""
    kind = cell.get("cell_type") if isinstance(cell, dict) else None
    if kind not in ("code", "markdown"):
        return None
    make = nbformat.v4.new_code_cell if kind == "code" else nbformat.v4.new_markdown_cell
    return Cell(make(source_of(cell)), "student", run_source=source_of(cell))


def release_cell(
    cell: NotebookNode, source_cells: dict[str, NotebookNode], answer: dict | None
) -> Cell:
    """A graded, locked or answer cell of the release, as grading runs it."""
    role, gid = role_of(cell), grade_id(cell)
    shown = copy.deepcopy(cell)
    shown.outputs = [] if shown.cell_type == "code" else shown.get("outputs")
    if shown.cell_type != "code":
        shown.pop("outputs", None)
    answered = answer is not None and source_of(answer).strip() != cell.source.strip()
    if role in ("answer", "manual") and answer is not None:
        shown.source = source_of(answer)
    run = shown.source
    if role == "test" and gid in source_cells:
        run = source_cells[gid].source  # with its hidden tests
    return Cell(shown, role, run_source=run, grade_id=gid, answered=answered)


def assemble(source: NotebookNode, release: NotebookNode, submitted: NotebookNode) -> list[Cell]:
    """The cells to grade, in order: see the module's docstring."""
    source_cells = {grade_id(c): c for c in source.cells if grade_id(c)}
    anchors = {grade_id(c): c for c in release.cells if grade_id(c)}
    by_source = {c.source: grade_id(c) for c in release.cells if role_of(c) in ("test", "locked")}
    claimed: dict[str, dict] = {}
    sequence: list[str | Cell] = []  # the submission: anchors by grade id, the rest as cells
    for cell in submitted.get("cells", []) if isinstance(submitted.get("cells"), list) else []:
        gid = grade_id(cell)
        if gid not in anchors:
            gid = by_source.get(source_of(cell)) if isinstance(cell, dict) else None
        if gid in anchors:
            if gid not in claimed:  # a second copy of a graded cell is dropped
                claimed[gid] = cell
                sequence.append(gid)
        elif (kept := student_cell(cell)) is not None:
            sequence.append(kept)
    cells: list[Cell] = []
    position = 0
    for cell in release.cells:
        gid = grade_id(cell)
        if gid is None:
            continue  # a provided cell: the student's copy is in the sequence
        if gid in claimed and (at := sequence.index(gid)) >= position:
            cells += [c for c in sequence[position:at] if isinstance(c, Cell)]
            position = at + 1
        cells.append(release_cell(cell, source_cells, claimed.get(gid)))
    return cells + [c for c in sequence[position:] if isinstance(c, Cell)]


# ---------------------------------------------------------------- 2. run


class GradingClient(NotebookClient):
    """nbclient, with the challenge written before each test cell and outputs capped."""

    def __init__(self, nb: NotebookNode, challenges: dict[int, dict], box: sandbox.Sandbox, **kw):
        super().__init__(nb, **kw)
        self.challenges, self.box = challenges, box
        self.timed_out: set[int] = set()
        self.output_bytes: dict[int, int] = {}
        self.seconds: dict[int, float] = {}

    async def async_execute_cell(self, cell, cell_index, execution_count=None, store_history=True):
        """Reveal the test's challenge only now, after every cell before it has run."""
        target = self.box.challenge / evidence.CURRENT
        if cell_index in self.challenges:
            evidence.save(self.challenges[cell_index], target)
        started = time.monotonic()
        try:
            return await super().async_execute_cell(
                cell, cell_index, execution_count, store_history
            )
        finally:
            self.seconds[cell_index] = time.monotonic() - started
            target.unlink(missing_ok=True)

    execute_cell = run_sync(async_execute_cell)  # nbclient binds its own coroutine otherwise

    async def _async_handle_timeout(self, timeout, cell=None):
        """Note the cell that timed out; nbclient interrupts the kernel and goes on."""
        self.timed_out.add(self.nb.cells.index(cell) if cell in self.nb.cells else -1)
        return await super()._async_handle_timeout(timeout, cell)

    def output(self, outs, msg, display_id, cell_index):
        """Keep at most MAX_OUTPUT_BYTES of a cell's output."""
        size = len(str(msg.get("content", "")))
        used = self.output_bytes.get(cell_index, 0)
        self.output_bytes[cell_index] = used + size
        if used + size > MAX_OUTPUT_BYTES:
            if used <= MAX_OUTPUT_BYTES:
                outs.append(nbformat.v4.new_output("stream", name="stdout", text="[output cut]\n"))
            return None
        return super().output(outs, msg, display_id, cell_index)


@dataclass
class Run:
    """What happened when the cells ran."""

    status: dict[int, str]  # cell index -> "ok", "error", "timeout"
    errors: dict[int, str]  # cell index -> "Ename: evalue"
    stopped: str | None
    evidence_dir: Path
    seconds: dict[int, float] = field(default_factory=dict)  # cell index -> seconds it ran


def kernel_env(box: sandbox.Sandbox, secret: bytes) -> dict[str, str]:
    """What the grading kernel is told: where to read challenges and write evidence."""
    return {
        GRADING_ENV: "1",
        SALT_ENV: str(verdict.derive_seed(secret, "cells")),
        evidence.CHALLENGE_ENV: str(box.challenge),
        evidence.EVIDENCE_ENV: str(box.scratch / "evidence"),
    }


def run(
    cells: list[Cell],
    challenges: dict[int, dict],
    box: sandbox.Sandbox,
    settings: Settings,
    secret: bytes,
) -> tuple[NotebookNode, Run]:
    """Run every code cell in a sandboxed kernel; stop at a dead kernel or a limit."""
    nb = nbformat.v4.new_notebook(cells=[_runnable(c) for c in cells])
    manager = sandbox.kernel_manager(box, kernel_env(box, secret))
    client = GradingClient(
        nb,
        challenges,
        box,
        km=manager,
        timeout=int(settings.cell_timeout),
        interrupt_on_timeout=True,
        allow_errors=True,
        startup_timeout=120,
    )
    status, errors, stopped = {}, {}, None
    watchdog = Watchdog(manager, box.scratch, settings.submission_timeout, settings.scratch_mb)
    try:
        with client.setup_kernel():
            for index, cell in enumerate(nb.cells):
                if cell.cell_type != "code":
                    continue
                client.timeout = max(1, int(min(settings.cell_timeout, watchdog.remaining())))
                try:
                    client.execute_cell(cell, index)
                except DeadKernelError:
                    stopped = f"cell {index + 1}: " + (watchdog.reason or _why_dead(manager))
                    break
                status[index], errors[index] = _outcome(cell, index in client.timed_out)
    except Exception as exc:  # a kernel that never started, or that spoke nonsense
        stopped = stopped or f"the kernel stopped: {type(exc).__name__}: {str(exc)[:200]}"
    finally:
        watchdog.stop()
        manager.kill_sandbox()
    return nb, Run(status, errors, stopped, box.scratch / "evidence", client.seconds)


class Watchdog(threading.Thread):
    """Kills the sandbox at the submission limit, or when its scratch grows past its quota."""

    def __init__(self, manager, scratch: Path, seconds: float, quota_mb: int) -> None:
        super().__init__(daemon=True)
        self.manager, self.scratch, self.quota = manager, scratch, quota_mb * 2**20
        self.deadline = time.monotonic() + seconds
        self.seconds, self.reason = seconds, None
        self.done = threading.Event()
        self.start()

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def run(self) -> None:
        while not self.done.wait(1.0):
            if self.remaining() <= 0:
                self.reason = f"the submission ran longer than {self.seconds:g} s and was stopped"
            elif scratch_bytes(self.scratch, self.quota) > self.quota:
                self.reason = f"the notebook wrote more than {self.quota >> 20} MB and was stopped"
            if self.reason:
                self.manager.kill_sandbox()
                return

    def stop(self) -> None:
        self.done.set()


def scratch_bytes(root: Path, limit: int) -> int:
    """Bytes under `root`, counted until past `limit` (files count 4 kB at least)."""
    total, stack = 0, [str(root)]
    while stack and total <= limit:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        total += max(entry.stat(follow_symlinks=False).st_size, 4096)
        except OSError:
            continue
    return total


def _runnable(cell: Cell) -> NotebookNode:
    """The cell as the kernel runs it (tests with their hidden part)."""
    runnable = copy.deepcopy(cell.shown)
    runnable.source = cell.run_source
    runnable.metadata = {}
    return runnable


def _outcome(cell: NotebookNode, timed_out: bool) -> tuple[str, str]:
    """("ok" | "error" | "timeout", message) of an executed cell, by nbgrader's rules."""
    if timed_out:
        return "timeout", "the cell ran out of time and was interrupted"
    for output in cell.get("outputs", []):
        if output.output_type == "error":
            return "error", f"{output.ename}: {output.evalue}"
        if output.output_type == "stream" and output.name == "stderr":
            lines = [line for line in output.text.splitlines() if line.strip()]
            if any(not WARNING.search(line) for line in lines):
                return "error", "the cell wrote to stderr"
    return "ok", ""


def _why_dead(manager: sandbox.SandboxedKernelManager) -> str:
    """Why the kernel died, in words a student understands."""
    process = getattr(manager, "sandbox_process", None)
    code = process.poll() if process is not None else None
    if code is not None and code in (-signal.SIGKILL, 128 + signal.SIGKILL):
        return "the kernel was killed (out of memory?)"
    if code is not None:
        return f"the kernel exited (status {code})"
    return "the kernel died"


# ---------------------------------------------------------------- 3. judge and report


def grade(
    source: NotebookNode,
    release: NotebookNode,
    submission: bytes,
    secret: bytes,
    settings: Settings,
) -> JobResult:
    """Grade one submission: see the module's docstring."""
    try:
        submitted = nbformat.reads(submission.decode("utf-8", "replace"), as_version=4)
    except Exception as exc:  # not JSON, not a notebook: nothing to grade
        return JobResult(
            None,
            zero_scores(release, "the submission is not a notebook"),
            error=f"not a notebook ({type(exc).__name__})",
        )
    cells = assemble(source, release, submitted)
    modules = verdict.checks_modules([c.run_source for c in cells if c.role == "locked"])
    specs = {
        i: verdict.test_spec(c.grade_id, c.run_source, modules)
        for i, c in enumerate(cells)
        if c.role == "test"
    }
    challenges = {i: verdict.challenge(spec, secret) for i, spec in specs.items()}
    root = Path(tempfile.mkdtemp(prefix="grading-"))
    root.chmod(0o755)
    try:
        box = sandbox.Sandbox(
            root / "sandbox",
            settings.library,
            settings.data,
            settings.limits,
            settings.use_sandbox,
            settings.threads,
            settings.uid,
            settings.cuda_devices,
            settings.drop_privileges,
        )
        box.prepare()
        executed, outcome = run(cells, challenges, box, settings, secret)
        hints = lab_hints(release)
        tests = [
            with_hints(test_result(cells[i], specs[i], challenges[i], outcome, i, secret), hints)
            if i in specs
            else None
            for i in range(len(cells))
        ]
        shown = feedback_notebook(release, cells, executed, tests)
        results = [t for t in tests if t is not None] + manual_results(cells)
        order = [grade_id(c) for c in release.cells if grade_id(c)]
        results.sort(key=lambda t: order.index(t.grade_id))
        timed_out = any(s == "timeout" for s in outcome.status.values())
        return JobResult(shown, results, stopped=outcome.stopped, timed_out=timed_out)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_result(
    cell: Cell, spec: verdict.TestSpec, chall: dict, outcome: Run, index: int, secret: bytes
) -> TestResult:
    """Points and message of one test cell from its verdicts and (if it must) the kernel's outcome."""
    points = float(cell.shown.metadata["nbgrader"]["points"])
    state = outcome.status.get(index)
    if state is None:
        missing = f"not run: {outcome.stopped or 'the kernel stopped before this test'}"
    elif state == "ok":
        missing = "the check did not run"
    else:
        missing = f"the test cell stopped before this check: {outcome.errors.get(index, state)}"
    verdicts = verdict.judge(spec, chall, outcome.evidence_dir, secret, missing)
    lines = [_verdict_line(v) for v in verdicts]
    passed = all(v.passed for v in verdicts)
    if spec.judged_in_kernel:
        kernel_ok = state == "ok"
        passed = passed and kernel_ok
        lines.append(
            "judged in the kernel: "
            + (
                "no error"
                if kernel_ok
                else (missing if state is None else outcome.errors.get(index, state))
            )
        )
    return TestResult(
        cell.grade_id,
        points if passed else 0.0,
        points,
        "\n".join(lines),
        spec.judged_in_kernel,
        seconds=outcome.seconds.get(index, 0.0),
    )


HINT = re.compile(r"^\s*# TODO: (.+)$")
MOST_HINTS = 3


def lab_hints(release: NotebookNode) -> dict[str, list[str]]:
    """By test id: the lab's hints (the release's `# TODO:` lines) of the answer cells since
    the previous test cell, which are what that test checks."""
    hints: dict[str, list[str]] = {}
    pending: list[str] = []
    for cell in release.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("grade") and not meta.get("solution"):
            hints[meta["grade_id"]], pending = pending, []
        elif meta.get("solution") and cell.get("cell_type") == "code":
            pending += [
                m.group(1) for line in source_of(cell).split("\n") if (m := HINT.match(line))
            ]
    return hints


def with_hints(test: TestResult, hints: dict[str, list[str]]) -> TestResult:
    """A failed test's message ends with the lab's hints for it (a few, in the lab's words)."""
    found = hints.get(test.grade_id, [])[:MOST_HINTS]
    if test.score != 0.0 or not found:
        return test
    lines = "\n".join(f"hint: {hint}" for hint in found)
    return replace(test, message=f"{test.message}\n{lines}")


def _verdict_line(v: verdict.Verdict) -> str:
    """One line of a test's message: passed, or failed with the public reason."""
    if v.passed:
        return f"passed: {v.call.label}" + (f"\n  measured: {v.measured}" if v.measured else "")
    if v.call.hidden:  # a hidden call names no input, threshold or property
        return f"failed: {v.call.label}"
    return f"failed: {v.call.label}: {v.message}\n  tested: {v.call.check.tested}"


def manual_results(cells: list[Cell]) -> list[TestResult]:
    """Answers graded by a person: no score until they are."""
    results = []
    for cell in (c for c in cells if c.role == "manual"):
        points = float(cell.shown.metadata["nbgrader"]["points"])
        if cell.answered:
            results.append(TestResult(cell.grade_id, None, points, "awaiting manual grading"))
        else:  # as nbgrader does: an answer left as released earns nothing, and needs no one
            results.append(TestResult(cell.grade_id, 0.0, points, "no answer"))
    return results


def zero_scores(release: NotebookNode, message: str) -> list[TestResult]:
    """Every graded cell of the release at 0 points (manual ones at none)."""
    results = []
    for cell in release.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade"):
            manual = bool(meta.get("solution"))
            results.append(
                TestResult(
                    meta["grade_id"],
                    None if manual else 0.0,
                    float(meta["points"]),
                    "awaiting manual grading" if manual else message,
                )
            )
    return results


def feedback_notebook(
    release: NotebookNode, cells: list[Cell], executed: NotebookNode, tests: list[TestResult | None]
) -> NotebookNode:
    """The graded notebook as feedback shows it: test cells show the release's source and the verdicts."""
    nb = copy.deepcopy(release)
    nb.cells = []
    for cell, ran, test in zip(cells, executed.cells, tests, strict=True):
        shown = copy.deepcopy(cell.shown)
        if shown.cell_type == "code":
            shown.outputs = verdict_outputs(test) if test is not None else ran.get("outputs", [])
            shown.execution_count = ran.get("execution_count")
        nb.cells.append(shown)
    return nb


def verdict_outputs(test: TestResult) -> list[NotebookNode]:
    """A test cell's outputs: its verdict lines; an error output if it lost its points."""
    outputs = [nbformat.v4.new_output("stream", name="stdout", text=test.message + "\n")]
    if test.score == 0.0 and test.max_score > 0:
        outputs.append(
            nbformat.v4.new_output(
                "error",
                ename="TestFailed",
                evalue=test.grade_id,
                traceback=[f"TestFailed: {test.grade_id}"],
            )
        )
    return outputs
