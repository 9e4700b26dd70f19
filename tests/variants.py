"""Plausible mistakes and correct alternatives, applied to a lab's real test cells (issue 10).

A lab's catalogue lists, per graded item (a test cell, named by its grade id), answers a student
could plausibly write: mistakes (misread text, mixed-up conventions, a missing piece) that must
lose the item, and correct variants (another valid way to write it) that must keep it. Each entry
gives the student's names the test cell uses (`{"kl_normal": ...}`), and the harness runs the
cell's own check calls on them exactly as the grader does, out of the kernel: the challenge drawn
from a per-run secret, the evidence collected, converted and admitted, then judged. An item fails
if any of its calls, public or hidden, fails.

Statistical items are run under many secrets: a correct variant must pass under every one, and a
mistake marked `statistical` (a small systematic bias that only the statistics can see) must fail
under at least 299 of 300.
"""

import ast
import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from autograder import template, verdict, views
from dgmlab.checks import evidence
from dgmlab.checks.core import Check, CheckFailed

ROOT = Path(__file__).resolve().parent.parent
MIN_MISTAKES, MIN_CORRECT = 6, 4  # per graded item, as issue 10 asks
POWER_SEEDS, POWER_MIN_CAUGHT = 300, 299


@dataclass(frozen=True)
class Statement:
    """One check call of a test cell: the check, its literal parameters, its answers' source."""

    check: Check
    params: dict
    answers: tuple[str, ...]
    hidden: bool
    line: int


@dataclass(frozen=True)
class Variant:
    """A student's answer to one item: the names it binds, and whether it is correct."""

    item: str
    why: str
    names: Callable[[], dict]
    correct: bool
    statistical: bool = False  # judged by statistics: run under POWER_SEEDS secrets

    def __str__(self) -> str:
        return f"{self.item}: {self.why}"


@functools.cache
def test_cells(lab: str) -> dict[str, tuple[Statement, ...]]:
    """The check calls of every test cell of labs/LAB.md, by grade id, from the instructor's
    source (hidden tests included)."""
    parsed = template.read_template(ROOT / "labs" / f"{lab}.md")
    rendered = views.render(parsed, "nbgrader")
    locked = [out.source for cell, out in zip(parsed.cells, rendered, strict=True) if cell.locked]
    modules = verdict.checks_modules(locked)
    cells = {}
    for cell, out in zip(parsed.cells, rendered, strict=True):
        if cell.test is not None:
            cells[cell.test.id] = tuple(statements(out.source, modules))
    return cells


def statements(source: str, modules: dict[str, str]) -> list[Statement]:
    """The cell's `checks.NAME(...)` statements, each with its positional answers as source."""
    hidden = verdict.hidden_lines(source)
    found, modules = [], dict(modules)
    for node in ast.parse(verdict.strip_magics(source)).body:
        if bound := verdict.module_bindings(node):  # the hidden region's import of its checks
            modules.update(bound)
            continue
        call = verdict.check_call(node, modules)
        assert call is not None, f"line {node.lineno}: not a check call: {ast.unparse(node)}"
        check, params = call
        answers = tuple(ast.unparse(arg) for arg in node.value.args)
        found.append(Statement(check, params, answers, node.lineno in hidden, node.lineno))
    return found


def checks_namespace(lab: str) -> dict[str, Any]:
    """What a test cell's answers may refer to besides the student's names."""
    statements_ = next(s for cell in test_cells(lab).values() for s in cell)
    module = importlib.import_module(statements_.check._collect.__module__)
    return {"checks": module, "torch": torch, "nn": nn}


def failures(lab: str, variant: Variant, secret: bytes, first_only: bool = False) -> list[str]:
    """Run the item's check calls on the variant's names under `secret`: the failure messages
    (empty when the item passes); with `first_only`, stop at the first failing call."""
    names = {**checks_namespace(lab), **variant.names()}
    messages = []
    for index, statement in enumerate(test_cells(lab)[variant.item]):
        label = f"line {statement.line} {statement.check.__name__}"
        answers = tuple(eval(source, names) for source in statement.answers)  # noqa: S307
        inputs = statement.check.make_inputs(
            verdict.derive_seed(secret, variant.item, index, "inputs"), statement.params
        )
        seed = verdict.derive_seed(secret, variant.item, index, "collect")
        found = statement.check.collect(answers, inputs, statement.params, seed)
        found = evidence.admit(evidence.to_evidence(found))
        seed = verdict.derive_seed(secret, variant.item, index, "judge")
        try:
            statement.check.verdict(inputs, found, statement.params, seed)
        except CheckFailed as exc:
            messages.append(f"{label}: {exc}")
        except Exception as exc:  # the grader counts a judge's crash as a failure; so do we
            messages.append(f"{label}: the evidence could not be judged ({exc!r})")
        if first_only and messages:
            break
    return messages


def secret(n: int) -> bytes:
    """The n-th grading secret of a test run (the grader draws 32 random bytes)."""
    return n.to_bytes(32, "little")


@dataclass
class Catalogue:
    """The variants of one lab, registered with the `mistake` and `correct` decorators."""

    lab: str
    variants: list[Variant] = field(default_factory=list)

    def mistake(self, item: str, why: str, statistical: bool = False) -> Callable:
        """Decorator: `fn()` returns the names of an answer that must lose `item` (under at
        least 299 of 300 secrets if `statistical`: a bias only the statistics can see)."""
        return self._register(item, why, False, statistical)

    def correct(self, item: str, why: str, statistical: bool = False) -> Callable:
        """Decorator: `fn()` returns the names of an answer that must keep `item` (under
        every one of 300 secrets if `statistical`)."""
        return self._register(item, why, True, statistical)

    def _register(self, item: str, why: str, correct: bool, statistical: bool) -> Callable:
        def register(fn: Callable[[], dict]) -> Callable[[], dict]:
            assert item in test_cells(self.lab), f"{self.lab} has no test cell {item!r}"
            self.variants.append(Variant(item, why, fn, correct, statistical))
            return fn

        return register

    @property
    def mistakes(self) -> list[Variant]:
        return [v for v in self.variants if not v.correct]

    @property
    def corrects(self) -> list[Variant]:
        return [v for v in self.variants if v.correct]

    def expect_fails(self, variant: Variant, n: int = 0) -> list[str]:
        """Fail the test unless the mistake loses its item under secret n."""
        found = failures(self.lab, variant, secret(n))
        assert found, f"{variant} earned the item"
        return found

    def expect_passes(self, variant: Variant, n: int = 0) -> None:
        """Fail the test unless the correct variant keeps its item under secret n."""
        found = failures(self.lab, variant, secret(n))
        assert not found, f"{variant} lost the item: {found}"

    def caught(self, variant: Variant, seeds: int = POWER_SEEDS) -> int:
        """Under how many of `seeds` secrets the variant loses its item."""
        # a mistake has lost its item at its first failing call: the rest need not run
        first = not variant.correct
        return sum(
            bool(failures(self.lab, variant, secret(n), first_only=first)) for n in range(seeds)
        )

    def counts(self) -> dict[str, tuple[int, int]]:
        """(mistakes, correct variants) per graded item, every item of the lab listed."""
        return {
            item: (
                sum(1 for v in self.mistakes if v.item == item),
                sum(1 for v in self.corrects if v.item == item),
            )
            for item in test_cells(self.lab)
        }

    def expect_complete(self) -> None:
        """Fail the test unless every graded item lists enough mistakes and correct variants."""
        short = {
            item: n
            for item, n in self.counts().items()
            if n[0] < MIN_MISTAKES or n[1] < MIN_CORRECT
        }
        assert not short, (
            f"items with fewer than {MIN_MISTAKES} mistakes or {MIN_CORRECT} correct: {short}"
        )
