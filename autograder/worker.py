"""What a grading worker runs: one submission in, its graded result out.

A `Task` carries everything a job needs that the course has (the instructor's source, the
release, the submission's bytes, the course's time limits), so that it runs the same in a local
process pool and on a Dask worker on another machine: nothing travels through a shared
filesystem. What the worker's machine has itself, it finds itself: the check library (this
package, which it must have installed) and the MNIST files (`make data` there, or DGM_DATA).
"""

import atexit
import contextlib
import ctypes
import functools
import os
import secrets
import shutil
import signal
import socket
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from autograder import job, sandbox, slots
from dgmlab import heldout


@dataclass(frozen=True)
class Policy:
    """How the course grades: the same for every submission of a run."""

    use_sandbox: bool = True
    cell_timeout: float = 600
    submission_timeout: float = 1800
    retries: int = 1  # a submission with a timed-out cell is graded again this many times
    threads: str = "1"  # threads of each grading kernel
    kernels_per_device: int = 1  # grading kernels sharing one CUDA device
    # Unsandboxed, as root: run the kernel as the slot's unprivileged user all the same. Off
    # for `autograde --no-sandbox` (docs/gradescope.md, "The sandbox"); on for Gradescope.
    drop_privileges: bool = False


@dataclass(frozen=True)
class Task:
    """One submission to grade, with everything of the course it needs."""

    student: str
    lab: str
    source: NotebookNode  # the instructor's notebook, hidden tests included
    release: NotebookNode
    submission: bytes | None  # None: no LAB.ipynb was submitted
    digest: str  # sha256 of the submission's bytes and of the source: what was graded
    others: tuple[str, ...] = ()  # other notebooks in the submission folder, ignored
    policy: Policy = field(default_factory=Policy)

    @property
    def key(self) -> str:
        """A name unique to this submission's bytes, for logs and the Dask scheduler."""
        return f"grade-{self.lab}-{self.student}-{self.digest[:12]}"


@dataclass
class Outcome:
    """A graded submission as the worker hands it back."""

    student: str
    lab: str
    digest: str
    result: job.JobResult
    worker: str  # host:pid that graded it
    slot: int
    cuda_devices: str | None


def grade(task: Task, config: job.Settings) -> job.JobResult:
    """Grade the task's submission with `config`; a run with a timed-out cell is repeated up
    to `task.policy.retries` times and the last run counts."""
    if task.submission is None:
        result = job.JobResult(
            None, job.zero_scores(task.release, f"no {task.lab}.ipynb was submitted")
        )
        result.error = f"no {task.lab}.ipynb in the submission"
    else:
        for _ in range(1 + task.policy.retries):
            secret = secrets.token_bytes(32)
            result = job.grade(task.source, task.release, task.submission, secret, config)
            if not result.timed_out:
                break
    if task.others:
        result.notes.append(f"ignored, not part of the lab: {', '.join(task.others)}")
    result.sandboxed = config.use_sandbox
    if not config.use_sandbox:
        dropped = config.drop_privileges and os.getuid() == 0
        as_user = f", as the unprivileged user {config.uid}" if dropped else ""
        result.notes.append(f"graded WITHOUT the sandbox (--no-sandbox){as_user}")
    return result


def settings(policy: Policy) -> job.Settings:
    """A job's settings from the course's policy and this machine's library and data."""
    library, data = machine_files()
    return job.Settings(
        library=library,
        data=data,
        cell_timeout=policy.cell_timeout,
        submission_timeout=policy.submission_timeout,
        use_sandbox=policy.use_sandbox,
        threads=policy.threads,
        drop_privileges=policy.drop_privileges,
    )


@functools.cache
def machine_files() -> tuple[Path, Path]:
    """This worker process's copies of the public check library and of the graded kernels'
    data (without the held-out images), made once and removed at exit."""
    root = Path(tempfile.mkdtemp(prefix="autograder-worker-"))
    root.chmod(0o755)  # the sandbox user must reach the copies
    atexit.register(shutil.rmtree, root, True)
    library = sandbox.public_library(root / "library")
    data = heldout.public_copy(root / "data")
    for path in (library, root / "library"):
        path.chmod(0o755)
    return library, data


def run(task: Task) -> Outcome:
    """The worker's entry point: grade the task in a slot of this machine."""
    started = time.monotonic()
    limit_threads(task.policy.threads)
    config = settings(task.policy)
    with slots.held_slot(kernels_per_device=task.policy.kernels_per_device) as slot:
        config = replace(config, uid=slot.uid, cuda_devices=slot.cuda_devices)
        result = grade(task, config)
    result.seconds = time.monotonic() - started
    worker = f"{socket.gethostname()}:{os.getpid()}"
    return Outcome(
        task.student, task.lab, task.digest, result, worker, slot.number, slot.cuda_devices
    )


def limit_threads(threads: str) -> None:
    """The grader's own torch work (judging, scoring models) uses the threads its kernel may:
    a worker counts as one kernel's worth of cores, and with torch's default (every core)
    two workers' judges fought the other worker's kernel (2 workers on 2 cores: 1.69x)."""
    if threads.isdigit() and threads != "0":
        import torch

        torch.set_num_threads(int(threads))


def init_pool_process() -> None:
    """A local pool's worker: die with the coordinator.

    Killed any way, the coordinator takes its workers with it (PR_SET_PDEATHSIG), and each
    worker's sandbox goes with the worker (bubblewrap's --die-with-parent): nothing of an
    interrupted run keeps grading behind the next one's back. (SIGINT is left alone: an
    ignored signal is inherited through exec, and the kernels must stay interruptible.)
    """
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # the coordinator died before the line above ran
        os._exit(1)


def read_notebook(path: Path) -> NotebookNode:
    """A course notebook (source or release), read as nbformat 4."""
    return nbformat.read(path, as_version=4)
