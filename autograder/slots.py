"""Grading slots: which user and which GPU a kernel graded at the same time as others gets.

Kernels graded at once on one machine, by one pool or by several Dask workers, each hold a slot
for the whole of their job: slot k runs as user SANDBOX_UID + k (as root: one submission's
processes never count against another's RLIMIT_NPROC, and none can signal another's) and, where
CUDA devices are present, on device k mod the number of devices (`kernels_per_device` slots per
device). A slot is an exclusive lock (flock) on a file of the machine's temporary directory, so
it is released by the kernel when its holder dies, however it dies.
"""

import contextlib
import fcntl
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

from autograder import sandbox

MAX_SLOTS = 256
WAIT_S = 0.5  # how often a job waiting for a slot looks again


@dataclass(frozen=True)
class Slot:
    """One grading slot: its number, its sandbox user, its CUDA device (None without any)."""

    number: int
    uid: int
    cuda_devices: str | None


def cuda_device_count() -> int:
    """How many CUDA devices this machine's grading kernels can use (0 without a GPU)."""
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def slot_directory() -> Path:
    """Where the slot locks live: private to the grading user."""
    path = Path(tempfile.gettempdir()) / f"autograder-slots-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


@contextlib.contextmanager
def held_slot(devices: int | None = None, kernels_per_device: int = 1) -> Iterator[Slot]:
    """Hold the lowest free slot until the block ends (a job's whole run); while every slot
    is taken (more workers than devices x kernels per device), wait for one."""
    devices = cuda_device_count() if devices is None else devices
    capacity = min(devices * kernels_per_device if devices else MAX_SLOTS, MAX_SLOTS)
    while True:
        for number in range(capacity):
            lock = open(slot_directory() / f"{number}.lock", "w")  # noqa: SIM115 (held below)
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.close()
                continue
            uid = sandbox.SANDBOX_UID + number
            try:
                clear(uid)  # a holder that died may have left its kernel's processes
                device = str(number % devices) if devices else None
                yield Slot(number, uid, device)
            finally:
                clear(uid)
                lock.close()  # closing the file releases the lock
            return
        time.sleep(WAIT_S)


def clear(uid: int, timeout: float = 30) -> None:
    """As root: kill every process of the slot's user and wait until none is left.

    Killed processes count against RLIMIT_NPROC until they are reaped: after a fork bomb the
    next kernel of the same user could not start ("Kernel died before replying to
    kernel_info") until this waited for them. The user is the slot's alone, so nothing else
    is touched."""
    if os.getuid() != 0:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [
            p
            for p in psutil.process_iter(["uids"])
            if p.info["uids"] and p.info["uids"].real == uid
        ]
        if not left:
            return
        for process in left:
            with contextlib.suppress(psutil.Error):
                process.kill()
        psutil.wait_procs(left, timeout=1)
