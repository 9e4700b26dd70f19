"""Shared machinery of the checks: seeding, warning hygiene, pristine references, devices."""

import contextlib
import functools
import hashlib
import importlib
import inspect
import math
import random
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from dgmlab.checks import evidence

# References captured when the check library is imported, which the lab's locked first cell
# does before any student code runs: a submission that later rebinds torch.allclose and friends
# does not change what the checks compare with.
allclose = torch.allclose
equal = torch.equal
isfinite = torch.isfinite

# KL(N(mu, exp(log_var)) || N(0, 1)) in closed form, DESIGN §3: (mu, log_var) -> nats.
EXACT_KL = (
    (0.0, 0.0, 0.0),
    (2.0, 0.0, 2.0),
    (0.0, 2.0, 2.194528),
    (0.0, math.log(4.0), 0.806853),
    (1.0, math.log(0.25), 0.818147),
)


class CheckFailed(AssertionError):
    """A check found the student's answer wrong; the message says what was expected."""

    def _render_traceback_(self) -> list[str]:
        """What IPython shows instead of a traceback (its hook for exactly this): the frames
        of the check library would bury the one block a student can act on."""
        return [f"{type(self).__name__}: {self}"]


STUB_WORDS = ("ellipsis",)  # what Python calls `...`, the stub every region is released with


def describe_error(exc: BaseException) -> str:
    """A student's exception as one actionable block: the stub still in place says so; else
    the error and where in the student's own code it was raised (never the library's frames,
    nor a path of the machine)."""
    text = f"{type(exc).__name__}: {exc}"
    if any(word in str(exc).lower() for word in STUB_WORDS):
        return f"not implemented yet: the answer still holds the stub `...` ({text})"
    where = student_frame(exc)
    return f"{text}\n  raised in your code: {where}" if where else text


def student_frame(exc: BaseException) -> str:
    """`line N, in f: source` of the innermost frame in a notebook cell, if any."""
    import traceback  # only needed on a failure

    found = ""
    for frame in traceback.extract_tb(exc.__traceback__):
        if is_notebook_cell(frame.filename):
            found = f"line {frame.lineno}, in {frame.name}: {(frame.line or '').strip()}"
    return found


def is_notebook_cell(filename: str) -> bool:
    """ipykernel compiles each cell to /tmp/ipykernel_PID/HASH.py (older: <ipython-input-...>)."""
    return "ipykernel_" in filename or filename.startswith("<ipython-input")


def expect(condition: bool, message: str) -> None:
    """Raise CheckFailed with `message` unless `condition` holds."""
    if not condition:
        raise CheckFailed(message)


def stable_seed(name: str) -> int:
    """A seed derived from a check's name: the same on every machine and Python run."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little")


def seed_everything(seed: int) -> None:
    """Seed every generator a check or a student's code may draw from."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


@contextlib.contextmanager
def restored_rng() -> Iterator[None]:
    """Give back every generator's state afterwards: running a check in the middle of a
    notebook must not change what the student's next cell draws."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng():  # the CPU generator and every CUDA device's
            yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


def check(fn: Callable[..., None]) -> Callable[..., None]:
    """Make `fn` a check: seeded by its name (or `seed=`), generators restored afterwards,
    warnings silenced, success printed."""

    @functools.wraps(fn)
    def run(*args: Any, seed: int | None = None, **kwargs: Any) -> None:
        # PyTorch warns freely; a warning on stderr would zero a correct answer's test cell.
        with restored_rng(), warnings.catch_warnings():
            seed_everything(stable_seed(fn.__qualname__) if seed is None else seed)
            warnings.simplefilter("ignore")
            fn(*args, **kwargs)
        print(f"passed: {fn.__name__}")

    return run


def device_of(obj: Any) -> torch.device:
    """The device of a module, tensor or bound method's module; CPU when it has none."""
    owner = getattr(obj, "__self__", obj)
    if isinstance(owner, torch.Tensor):
        return owner.device
    if isinstance(owner, nn.Module):
        for tensor in list(owner.parameters()) + list(owner.buffers()):
            return tensor.device
        device = getattr(owner, "device", None)
        if device is not None:
            return torch.device(device)
    return torch.device("cpu")


def expect_tensor(value: Any, what: str) -> torch.Tensor:
    """Return `value` if it is a tensor, else fail naming what was returned instead."""
    if value is None:  # a function whose body is still the stub `...` returns None
        raise CheckFailed(f"not implemented yet: {what} is None (nothing was returned)")
    if value is Ellipsis:  # `return (...)` with the stub still in the parentheses
        raise CheckFailed(f"not implemented yet: {what} is still the stub `...`")
    expect(
        isinstance(value, torch.Tensor),
        f"{what} should be a torch.Tensor, got {type(value).__name__}",
    )
    return value


def worst_case(got: torch.Tensor, want: torch.Tensor, inputs: dict[str, torch.Tensor]) -> str:
    """`for a = 0.3, b = 1.2: expected 0.45, got 0.9` at the element where `got` is furthest
    from `want` (inputs broadcast to want's shape; `at [i, j]` if none is given)."""
    g, w = got.detach().double().cpu(), want.detach().double().cpu()
    if tuple(g.shape) != tuple(w.shape):
        return f"expected shape {tuple(w.shape)}, got {tuple(g.shape)}"
    error = (g - w).abs().nan_to_num(nan=math.inf)
    index = tuple(int(i) for i in np.unravel_index(int(error.argmax()), tuple(w.shape)))
    named = [
        f"{name} = {value.detach().double().cpu().expand(w.shape)[index].item():.4g}"
        for name, value in inputs.items()
    ]
    where = f"for {', '.join(named)}" if named else f"at {list(index)}"
    return f"{where}: expected {w[index].item():.6g}, got {g[index].item():.6g}"


def expect_close(
    got: Any,
    want: torch.Tensor,
    message: str,
    inputs: dict[str, torch.Tensor] | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-6,
) -> None:
    """Fail unless `got` is a tensor of want's shape close to it (float64, no broadcasting),
    saying on which input it is furthest off: what was expected and what came instead."""
    if not isinstance(got, torch.Tensor):
        raise CheckFailed(f"{message}: got {'nothing' if got is None else type(got).__name__}")
    close = tuple(got.shape) == tuple(want.shape) and allclose(
        got.detach().double().cpu(), want.detach().double().cpu(), rtol=rtol, atol=atol
    )
    expect(close, f"{message}: {worst_case(got, want, inputs or {})}")


def expect_shape(tensor: torch.Tensor, shape: tuple[int, ...], what: str) -> None:
    """Fail unless `tensor` has exactly `shape`."""
    expect(
        tuple(tensor.shape) == tuple(shape),
        f"{what} should have shape {tuple(shape)}, got {tuple(tensor.shape)}",
    )


def expect_test_set(given: Any, want: torch.Tensor, name: str, described: str) -> None:
    """Fail unless `given` holds exactly the test images the check read itself, `want`."""
    given = expect_tensor(given, name)
    expect(
        tuple(given.shape) == tuple(want.shape)
        and equal(given.detach().to(want.device).float(), want),
        f"{name} should be {described}",
    )


def expect_test_scores(loss: float, kl: float, max_loss: float, min_kl: float) -> None:
    """Fail unless the test-set loss per image is below `max_loss` and the KL above `min_kl`."""
    expect(math.isfinite(loss), f"the loss on the test set is {loss}")
    expect(loss < max_loss, f"loss per test image {loss:.2f}, expected below {max_loss}")
    expect(
        kl > min_kl,
        f"KL per test image {kl:.2f}, expected above {min_kl}: the posterior collapsed onto the "
        "prior and z carries almost no information about x",
    )


# ---------------------------------------------------------------- checks judged by the grader


Evidence = dict[str, Any]


class Check:
    """A check in three parts, so that no verdict is reached where the student's code runs.

    `inputs(**params)` draws the challenge (seeded); `collect(*answers, inputs=..., **params)`
    runs the student's code on it in the student's kernel and returns the evidence; `judge(inputs,
    evidence, **params)` raises CheckFailed unless the evidence is what a correct answer gives.
    Called in a notebook, a Check collects and judges on the spot (a student's self-check);
    while graded it only collects, and the grader judges in its own process (evidence.py).
    """

    def __init__(self, collect: Callable[..., Evidence]) -> None:
        functools.update_wrapper(self, collect)
        self.name = f"{collect.__module__.rsplit('.', 1)[-1]}.{collect.__name__}"
        self.tested = what_is_tested(collect)
        self._collect = collect
        self._inputs: Callable[..., dict] = lambda **params: {}
        self._judge: Callable[..., str | None] | None = None

    def inputs(self, fn: Callable[..., dict]) -> Callable[..., dict]:
        """Decorator: the function that draws this check's challenge inputs."""
        self._inputs = fn
        return fn

    def judge(self, fn: Callable[..., str | None]) -> Callable[..., str | None]:
        """Decorator: the function that judges this check's evidence. It may return one line
        saying what it measured (a trained model's score), shown with the pass."""
        self._judge = fn
        return fn

    def make_inputs(self, seed: int, params: dict) -> dict:
        """The challenge inputs drawn from `seed`; the caller's generators are left untouched."""
        with restored_rng():
            seed_everything(seed)
            return self._inputs(**params)

    def collect(self, answers: tuple, inputs: dict, params: dict, seed: int) -> Evidence:
        """Run the student's code on the inputs; an exception becomes evidence of it."""
        with restored_rng(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a warning on stderr would fail a correct answer
            seed_everything(seed)
            try:
                return dict(self._collect(*answers, inputs=inputs, **params))
            except CheckFailed as exc:  # the collector already saw the answer is wrong
                return {evidence.ERROR: str(exc)}
            except Exception as exc:  # the student's code raised: that is the answer
                return {evidence.ERROR: describe_error(exc)}

    def verdict(self, inputs: dict, found: Evidence, params: dict, seed: int) -> str | None:
        """Raise CheckFailed unless `found` is the evidence of a correct answer; else return
        what the judge measured, if it says."""
        if evidence.ERROR in found:
            raise CheckFailed(str(found[evidence.ERROR]))
        assert self._judge is not None, f"{self.name} has no judge"
        with restored_rng(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            seed_everything(seed)
            measured = self._judge(inputs, found, **params)
        return measured if isinstance(measured, str) else None

    def __call__(self, *answers: Any, seed: int | None = None, **params: Any) -> None:
        """In a notebook: collect, then judge here (self-check) or leave it to the grader.

        `seed` replaces the seed of the self-check (the tests run checks under many seeds);
        while graded, seeds come from the grader."""
        if evidence.grading():
            test, index, call = evidence.next_challenge(self.name)
            found = self.collect(answers, call["inputs"], params, int(call["seed"]))
            evidence.record(test, index, self.name, found)
            print(f"collected: {self.__name__}")
            return
        if seed is None:
            seed = stable_seed(f"{self.name}{sorted(params.items())}")
        inputs = self.make_inputs(seed, params)
        found = evidence.admit(evidence.to_evidence(self.collect(answers, inputs, params, seed)))
        try:
            measured = self.verdict(inputs, found, params, seed)
        except CheckFailed as exc:  # say which check, as the grader's feedback does
            raise CheckFailed(f"{self.__name__}: {exc}\ntested: {self.tested}") from None
        print(f"passed: {self.__name__}")
        if measured:
            print(f"  measured: {measured}")


def what_is_tested(collect: Callable) -> str:
    """The first paragraph of a collector's docstring, on one line: what its check tests."""
    paragraph = (inspect.getdoc(collect) or "").split("\n\n")[0]
    return " ".join(paragraph.split()) or collect.__name__


def collect(fn: Callable[..., Evidence]) -> Check:
    """Decorator: `fn` collects the evidence of a Check (add .inputs and .judge)."""
    return Check(fn)


def answer_tensor(found: Evidence, key: str, what: str) -> torch.Tensor:
    """The tensor the student's code returned under `key`, or CheckFailed naming what it was."""
    value = found.get(key)
    if isinstance(value, dict) and value.get(evidence.OBJECT) == "ellipsis":
        raise CheckFailed(f"not implemented yet: {what} is still the stub `...`")
    if isinstance(value, dict) and evidence.OBJECT in value:
        raise CheckFailed(f"{what} should be a torch.Tensor, got {value[evidence.OBJECT]}")
    return expect_tensor(value, what)


def named_bar(bar: str, public: Any, lab: str, name: str) -> Any:
    """The threshold a test cell names by a literal: `public`, or `hidden` from
    autograder.hidden.LAB, which only the grader has (a student's self-check fails)."""
    if bar == "public":
        return public
    if bar != "hidden":
        raise ValueError(f"bar should be 'public' or 'hidden', got {bar!r}")
    try:
        hidden = importlib.import_module(f"autograder.hidden.{lab}")
    except ImportError:  # a copy of the library without the hidden thresholds
        raise CheckFailed("the hidden bar is known only to the grader") from None
    return getattr(hidden, name)
