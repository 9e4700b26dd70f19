"""Grading a class: which submissions to grade, on which workers, with progress, resumably.

The coordinator (this process) decides what to grade, sends each submission as a pure job
(autograder.worker) to a local process pool or to a Dask cluster, and hands every result, as it
arrives, to one writer (course.py), the only one that touches the gradebook. Each finished
submission appends one line to the course's ledger (`.grading/graded.jsonl`: what was graded,
from which bytes, with what score): a run that is interrupted, however, starts again where it
stopped, because the ledger says what is done. A lock on the course makes sure that no two runs
grade it, and so no submission, at the same time.
"""

import contextlib
import fcntl
import hashlib
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import psutil

from autograder import slots, worker

LEDGER = Path(".grading") / "graded.jsonl"
LOCK = Path(".grading") / "autograde.lock"
LOG = Path("autograde.log")


class CourseBusy(RuntimeError):
    """Another `autograder autograde` is grading this course."""


@dataclass(frozen=True)
class Selection:
    """Which submissions a run grades.

    By default every submission not graded yet (as nbgrader's autograde does); `changed` also
    regrades those whose bytes, or whose lab's source, differ from what was graded; `force`
    regrades everything selected. `students` and `labs` narrow the run (None: all)."""

    students: frozenset[str] | None = None
    labs: frozenset[str] | None = None
    changed: bool = False
    force: bool = False

    def wants(self, student: str, lab: str) -> bool:
        return (self.students is None or student in self.students) and (
            self.labs is None or lab in self.labs
        )


@dataclass
class Plan:
    """The tasks of a run, and what it leaves alone because it is already graded."""

    tasks: list[worker.Task]
    skipped: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Summary:
    """What a run did."""

    outcomes: list[worker.Outcome] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    lost: list[tuple[str, str, str]] = field(default_factory=list)  # (student, lab, why)
    seconds: float = 0.0

    @property
    def failed(self) -> list[worker.Outcome]:
        """Submissions that could not be graded, or whose run stopped before its end."""
        return [o for o in self.outcomes if o.result.error or o.result.stopped]

    def lines(self) -> list[str]:
        """The summary printed at the end of a run."""
        slowest = sorted(self.outcomes, key=lambda o: -o.result.seconds)[:3]
        lines = [
            f"graded {len(self.outcomes)} submission(s) in {self.seconds:.0f} s "
            f"({len(self.failed)} failed to run to the end, {len(self.skipped)} already graded "
            f"and skipped)",
        ]
        if slowest:
            lines.append(
                "slowest: "
                + ", ".join(f"{o.student}/{o.lab} {o.result.seconds:.0f} s" for o in slowest)
            )
        for o in self.failed:
            lines.append(f"failed: {o.student}/{o.lab}: {o.result.error or o.result.stopped}")
        for student, lab, why in self.lost:
            lines.append(f"NOT graded: {student}/{lab}: {why} (run again to grade it)")
        return lines


# ---------------------------------------------------------------- what to grade


def digest(submission: bytes | None, source: bytes) -> str:
    """What a grade depends on: the submission's bytes and the lab's source."""
    h = hashlib.sha256()
    for part in (submission or b"", source):
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()


def read_ledger(course: Path) -> dict[tuple[str, str], dict]:
    """The last ledger entry of every graded submission."""
    path = course / LEDGER
    entries: dict[tuple[str, str], dict] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            with contextlib.suppress(ValueError, KeyError):  # a line cut by a crash
                entry = json.loads(line)
                entries[(entry["student"], entry["lab"])] = entry
    return entries


def append_ledger(course: Path, entry: dict) -> None:
    """Append one line to the ledger and make it durable before going on."""
    path = course / LEDGER
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as ledger:
        ledger.write(json.dumps(entry, sort_keys=True) + "\n")
        ledger.flush()
        os.fsync(ledger.fileno())


def submission_folders(course: Path) -> list[tuple[str, str]]:
    """(student, lab) for every folder submitted/STUDENT/LAB/ of a released lab."""
    root = course / "submitted"
    return sorted(
        (s.name, a.name)
        for s in root.glob("*")
        if s.is_dir()
        for a in s.glob("*")
        if a.is_dir() and (course / "release" / a.name / f"{a.name}.ipynb").is_file()
    )


def plan(course: Path, selection: Selection, policy: worker.Policy) -> Plan:
    """The tasks of a run: the selected submissions that need grading, in a stable order."""
    done = read_ledger(course)
    result = Plan([])
    labs: dict[str, tuple] = {}
    for student, lab in submission_folders(course):
        if not selection.wants(student, lab):
            continue
        if lab not in labs:
            source_path = course / "source" / lab / f"{lab}.ipynb"
            labs[lab] = (
                source_path.read_bytes(),
                worker.read_notebook(source_path),
                worker.read_notebook(course / "release" / lab / f"{lab}.ipynb"),
            )
        source_bytes, source, release = labs[lab]
        folder = course / "submitted" / student / lab
        path = folder / f"{lab}.ipynb"
        submission = path.read_bytes() if path.is_file() else None
        stamp = digest(submission, source_bytes)
        last = done.get((student, lab))
        if not selection.force and last is not None:
            if not selection.changed or last.get("digest") == stamp:
                result.skipped.append((student, lab))
                continue
        others = tuple(sorted(p.name for p in folder.glob("*.ipynb") if p != path))
        result.tasks.append(
            worker.Task(student, lab, source, release, submission, stamp, others, policy)
        )
    return result


@contextlib.contextmanager
def course_lock(course: Path) -> Iterator[None]:
    """Hold the course's lock for a run; refuse if another run holds it."""
    path = course / LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            raise CourseBusy(f"{course} is being graded by {holder}: wait for it to end") from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()}\n")
        lock.flush()
        yield


# ---------------------------------------------------------------- where to grade


def default_workers(policy: worker.Policy) -> int:
    """As many kernels as the machine runs without oversubscribing: one per kernels_per_device
    on each CUDA device, else the cores divided by each kernel's threads."""
    devices = slots.cuda_device_count()
    if devices:
        return devices * policy.kernels_per_device
    threads = int(policy.threads) if policy.threads.isdigit() and policy.threads != "0" else 1
    return max(1, (os.cpu_count() or 1) // threads)


class LocalPool:
    """A pool of worker processes on this machine (spawned: no state of this one leaks in)."""

    def __init__(self, workers: int) -> None:
        self.executor = futures.ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=worker.init_pool_process,
        )

    def submit(self, task: worker.Task) -> futures.Future:
        return self.executor.submit(worker.run, task)

    def as_completed(self, pending: list) -> Iterator:
        return futures.as_completed(pending)

    def kill(self) -> None:
        """Kill the workers and every kernel they started, now."""
        me = psutil.Process()
        victims = me.children(recursive=True)
        for victim in victims:
            with contextlib.suppress(psutil.Error):
                victim.kill()
        psutil.wait_procs(victims, timeout=10)

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)


class DaskPool:
    """The workers of an existing Dask cluster (`distributed`): jobs and results travel
    through the scheduler; a job on a worker that dies is run again on another."""

    def __init__(self, address: str) -> None:
        from distributed import Client

        self.client = Client(address, timeout="30s")
        # workers must have the same grader, torch and nbgrader as this coordinator
        self.client.get_versions(check=True, packages=["autograder", "torch", "nbgrader"])

    def submit(self, task: worker.Task):
        # pure=False: a regrade is a new job; retries: a job whose worker died is rerun anyway
        return self.client.submit(worker.run, task, key=task.key, pure=False, retries=1)

    def as_completed(self, pending: list) -> Iterator:
        from distributed import as_completed

        return iter(as_completed(pending))

    def kill(self) -> None:
        """Drop the run's jobs: the scheduler cancels those not started."""
        self.client.close()

    def close(self) -> None:
        self.client.close()


def progress_bar(total: int, enabled: bool | None):
    """A progress bar with done/total, failures and ETA on a terminal; nothing elsewhere."""
    from tqdm.auto import tqdm

    show = sys.stderr.isatty() if enabled is None else enabled
    return tqdm(total=total, unit="submission", disable=not show, dynamic_ncols=True)


def grade_all(
    plan_: Plan,
    pool: LocalPool | DaskPool,
    on_result: Callable[[worker.Outcome], None],
    log: Path,
    show_progress: bool | None = None,
) -> Summary:
    """Send every task to the pool and hand each outcome to `on_result` as it arrives."""
    started = time.monotonic()
    summary = Summary(skipped=list(plan_.skipped))
    bar = progress_bar(len(plan_.tasks), show_progress)
    pending = {pool.submit(task): task for task in plan_.tasks}
    try:
        for future in pool.as_completed(list(pending)):
            task = pending.pop(future)
            try:
                outcome = future.result()
            except Exception as exc:  # the worker died or could not run the job at all
                summary.lost.append((task.student, task.lab, f"{type(exc).__name__}: {exc}"))
                bar.update(1)
                continue
            on_result(outcome)
            summary.outcomes.append(outcome)
            write_log(log, outcome)
            bar.update(1)
            bar.set_postfix(failed=len(summary.failed) + len(summary.lost), refresh=False)
    finally:
        bar.close()
        for task in pending.values():  # interrupted: these were not graded
            summary.lost.append((task.student, task.lab, "the run was interrupted"))
    summary.seconds = time.monotonic() - started
    return summary


def write_log(log: Path, outcome: worker.Outcome) -> None:
    """One line per finished submission: when, who, score, time, where, and how it ended."""
    r = outcome.result
    score = sum(t.score or 0.0 for t in r.tests)
    top = sum(t.max_score for t in r.tests)
    status = f"error: {r.error}" if r.error else f"stopped: {r.stopped}" if r.stopped else "ok"
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    device = f" cuda:{outcome.cuda_devices}" if outcome.cuda_devices is not None else ""
    line = (
        f"{now} {outcome.student}/{outcome.lab} {score:g}/{top:g} {r.seconds:.1f}s "
        f"{outcome.worker} slot {outcome.slot}{device} {status}\n"
    )
    with open(log, "a") as out:
        out.write(line)


def ledger_entry(outcome: worker.Outcome) -> dict:
    """What the ledger keeps of a graded submission."""
    r = outcome.result
    return {
        "student": outcome.student,
        "lab": outcome.lab,
        "digest": outcome.digest,
        "score": sum(t.score or 0.0 for t in r.tests),
        "max_score": sum(t.max_score for t in r.tests),
        "seconds": round(r.seconds, 1),
        "worker": outcome.worker,
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def open_pool(workers: int | None, scheduler: str | None, policy: worker.Policy):
    """The pool a run grades on: a Dask cluster's if `scheduler` is given, else local."""
    if scheduler:
        return DaskPool(scheduler)
    return LocalPool(workers or default_workers(policy))
