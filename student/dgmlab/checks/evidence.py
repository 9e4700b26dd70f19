"""Evidence: what a check collects in the student's kernel, as plain data, and how it travels.

While a submission is graded its kernel runs in a sandbox and decides nothing. Just before a
test cell runs, the grader writes that test's challenge (each check call's inputs and seed,
drawn from a secret the kernel has never seen) to CHALLENGE_DIR/current.pt. A check called in
the cell reads its inputs there, runs the student's code on them and writes what came out to
EVIDENCE_DIR/TEST/K.pt. The grader reads that file back with `torch.load(weights_only=True)`,
admits nothing but plain tensors and Python data (`admit`), and judges it in its own process.
A forged file therefore earns points only if it holds what a correct answer computes on
inputs that did not exist before the test cell started.
"""

import io
import os
import stat
from pathlib import Path
from typing import Any

import torch

CHALLENGE_ENV = "AUTOGRADER_CHALLENGE_DIR"
EVIDENCE_ENV = "AUTOGRADER_EVIDENCE_DIR"
CURRENT = "current.pt"
ERROR = "__error__"  # evidence of a call that raised: {"__error__": "TypeError: ..."}
OBJECT = "__object__"  # a returned value that is not data: {"__object__": "TypeName"}
MAX_DEPTH = 8
MAX_ELEMENTS = 200_000_000  # ~800 MB of float32 in one evidence file


class EvidenceError(ValueError):
    """An evidence file is missing, unreadable, or holds something other than plain data."""


def to_evidence(value: Any, depth: int = 0) -> Any:
    """`value` as plain data: tensors detached on the CPU, containers as lists and dicts."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().contiguous().clone().as_subclass(torch.Tensor)
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    if depth < MAX_DEPTH and isinstance(value, tuple | list):
        return [to_evidence(v, depth + 1) for v in value]
    if depth < MAX_DEPTH and isinstance(value, dict):
        return {str(k): to_evidence(v, depth + 1) for k, v in value.items()}
    if hasattr(value, "item") and hasattr(value, "dtype"):  # a numpy scalar
        return to_evidence(value.item(), depth)
    return {OBJECT: type(value).__name__}


def admit(value: Any, depth: int = 0, budget: list[int] | None = None) -> Any:
    """`value` if it is plain data (exact tensors, numbers, strings, lists, dicts), else raise."""
    budget = [MAX_ELEMENTS] if budget is None else budget
    if depth > MAX_DEPTH:
        raise EvidenceError("evidence nested too deeply")
    if type(value) is torch.nn.Parameter:
        value = value.data
    if type(value) is torch.Tensor:
        if value.layout != torch.strided or value.is_quantized or value.device.type != "cpu":
            raise EvidenceError("evidence holds a tensor that is not a dense CPU tensor")
        budget[0] -= value.numel()
        if budget[0] < 0:
            raise EvidenceError("evidence holds more numbers than any check collects")
        return value
    if type(value) in (bool, int, float, str) or value is None:
        return value
    if type(value) in (list, tuple):
        return [admit(v, depth + 1, budget) for v in value]
    if type(value) is dict and all(type(k) is str for k in value):
        return {k: admit(v, depth + 1, budget) for k, v in value.items()}
    raise EvidenceError(f"evidence holds a {type(value).__name__}, which is not plain data")


def load(path: Path, root: Path | None = None, max_bytes: int = 1 << 30) -> dict:
    """Read an evidence or challenge file written by the other side; never unpickle objects.

    With `root` (the grader reading what a sandbox wrote), only a regular file inside `root`
    is read: a symbolic link to a file of the grader's, or a FIFO, is refused."""
    data = torch_load(read_regular(path, root, max_bytes), path.name)
    data = admit(data)
    if not isinstance(data, dict):
        raise EvidenceError(f"{path.name} does not hold a dict")
    return data


def read_regular(path: Path, root: Path | None, max_bytes: int) -> bytes:
    """The bytes of a regular file, not followed through links, at most `max_bytes`."""
    if root is not None and not path.resolve().is_relative_to(root.resolve()):
        raise EvidenceError(f"{path.name} is not inside the sandbox's evidence directory")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise EvidenceError(f"{path.name} was not written") from None
    except OSError as exc:
        raise EvidenceError(f"{path.name} cannot be read ({exc.strerror})") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise EvidenceError(f"{path.name} is not a regular file")
        if info.st_size > max_bytes:
            raise EvidenceError(f"{path.name} is larger than {max_bytes} bytes")
        with os.fdopen(os.dup(fd), "rb") as handle:
            return handle.read(max_bytes + 1)[:max_bytes]
    finally:
        os.close(fd)


def torch_load(data: bytes, name: str) -> object:
    """torch.load with weights_only: tensors and plain containers, no code."""
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # any malformed file: the grader reports, never crashes
        raise EvidenceError(f"{name} is not a readable evidence file ({exc})") from exc


def save(data: dict, path: Path) -> None:
    """Write atomically: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    torch.save(data, partial)
    os.replace(partial, path)


def grading() -> bool:
    """Whether this process is a grading kernel with a challenge directory."""
    return bool(os.environ.get(CHALLENGE_ENV)) and bool(os.environ.get(EVIDENCE_ENV))


_used: dict[str, set[int]] = {}  # test id -> call indices already answered in this kernel


def next_challenge(name: str) -> tuple[str, int, dict]:
    """(test id, call index, call) of the first unanswered call of check `name` in this test."""
    current = load(Path(os.environ[CHALLENGE_ENV]) / CURRENT)
    test, calls = current.get("test"), current.get("calls", [])
    used = _used.setdefault(str(test), set())
    for index, call in enumerate(calls):
        if call.get("check") == name and index not in used:
            used.add(index)
            return str(test), index, call
    raise EvidenceError(f"the grader did not expect a call of {name} in this test cell")


def record(test: str, index: int, name: str, evidence: dict) -> None:
    """Write the evidence of call `index` of `test`."""
    path = Path(os.environ[EVIDENCE_ENV]) / test / f"{index}.pt"
    save({"check": name, "evidence": to_evidence(evidence)}, path)
