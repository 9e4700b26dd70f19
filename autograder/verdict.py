"""The grader's side of a test cell: which checks it calls, their challenges, their verdicts.

Everything here runs in the grader's process, which never runs a submission's code. What a
test cell checks is read from the instructor's source of the cell (never the submission's):
each top-level statement `checks.NAME(answer, ..., param=literal)` whose NAME is a Check of
the module the lab's locked cells import as `checks`. The challenge of each call is drawn
from the submission's secret; its evidence is judged by the Check's judge in this process.
A statement that is not such a call (a plain `assert`, say) can only be judged by the
kernel's own outcome: such a test is marked "judged in the kernel" and is not protected.
"""

import ast
import hashlib
import hmac
import importlib
from dataclasses import dataclass
from pathlib import Path

from dgmlab.checks import evidence
from dgmlab.checks.core import Check, CheckFailed

HIDDEN_BEGIN, HIDDEN_END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
CHECKS_PACKAGE = "dgmlab.checks"  # the public checks: the student package's
HIDDEN_CHECKS_PACKAGE = "autograder.hidden_checks"  # imported inside hidden regions
PACKAGES = (CHECKS_PACKAGE, HIDDEN_CHECKS_PACKAGE)


@dataclass(frozen=True)
class Call:
    """One check call of a test cell, as the instructor wrote it."""

    check: Check
    params: dict
    hidden: int  # 0 for a public call, n for the n-th hidden call of its cell
    line: int

    @property
    def label(self) -> str:
        """How a student sees this call named: a hidden call by its number only."""
        return f"hidden test {self.hidden}" if self.hidden else self.check.__name__


@dataclass(frozen=True)
class TestSpec:
    """What a test cell checks: its check calls, and whether anything else in it is graded."""

    grade_id: str
    calls: tuple[Call, ...]
    judged_in_kernel: bool  # the cell holds statements only the kernel's outcome can judge


def checks_modules(locked_sources: list[str]) -> dict[str, str]:
    """Names the locked cells bind to modules of the check library: {"checks": "dgmlab...."}."""
    names = {}
    for source in locked_sources:
        for node in ast.walk(ast.parse(strip_magics(source))):
            names.update(module_bindings(node))
    return names


def module_bindings(node: ast.AST) -> dict[str, str]:
    """The check modules an import statement binds, by name (empty for any other node)."""
    names = {}
    if isinstance(node, ast.ImportFrom) and node.module in PACKAGES:
        for alias in node.names:
            names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    elif isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name.startswith(tuple(p + "." for p in PACKAGES)) and alias.asname:
                names[alias.asname] = alias.name
    return names


def strip_magics(source: str) -> str:
    """The cell's Python: IPython magics and shell escapes become blank lines."""
    return "\n".join(
        "" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()
    )


def hidden_lines(source: str) -> set[int]:
    """The 1-based line numbers between nbgrader's hidden-test markers."""
    hidden, inside = set(), False
    for number, line in enumerate(source.splitlines(), start=1):
        if line.strip() == HIDDEN_BEGIN:
            inside = True
        elif line.strip() == HIDDEN_END:
            inside = False
        elif inside:
            hidden.add(number)
    return hidden


def test_spec(grade_id: str, source: str, modules: dict[str, str]) -> TestSpec:
    """Parse the instructor's test cell into its check calls."""
    tree = ast.parse(strip_magics(source))
    hidden = hidden_lines(source)
    calls, other = [], False
    modules = dict(modules)
    for statement in tree.body:
        bound = module_bindings(statement)
        if bound:  # a hidden region imports the hidden tests' checks: it grades nothing itself
            modules.update(bound)
            continue
        call = check_call(statement, modules)
        if call is None:
            other = other or not is_harmless(statement)
            continue
        check, params = call
        number = sum(1 for c in calls if c.hidden) + 1 if statement.lineno in hidden else 0
        calls.append(Call(check, params, number, statement.lineno))
    return TestSpec(grade_id, tuple(calls), judged_in_kernel=other or not calls)


def check_call(statement: ast.stmt, modules: dict[str, str]) -> tuple[Check, dict] | None:
    """(Check, literal keyword parameters) if the statement is `checks.NAME(...)`."""
    if not (isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call)):
        return None
    func = statement.value.func
    if not (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)):
        return None
    module = modules.get(func.value.id)
    if module is None:
        return None
    check = getattr(importlib.import_module(module), func.attr, None)
    if not isinstance(check, Check):
        return None
    params = {}
    for keyword in statement.value.keywords:
        if keyword.arg is None:
            return None
        if keyword.arg == "seed":
            continue  # while graded, the grader draws every seed
        try:
            params[keyword.arg] = ast.literal_eval(keyword.value)
        except ValueError:
            return None  # not a literal: an answer passed by keyword, judged in the kernel
    return check, params


def is_harmless(statement: ast.stmt) -> bool:
    """A statement that grades nothing: a docstring-like constant or a print of literals."""
    if not isinstance(statement, ast.Expr):
        return False
    value = statement.value
    if isinstance(value, ast.Constant):
        return True
    return (
        isinstance(value, ast.Call)
        and isinstance(value.func, ast.Name)
        and value.func.id == "print"
        and all(isinstance(a, ast.Constant) for a in value.args)
    )


def derive_seed(secret: bytes, *parts: object) -> int:
    """A 63-bit seed from the submission's secret and a purpose: unknowable without the secret."""
    message = "\x1f".join(map(str, parts)).encode()
    digest = hmac.new(secret, message, hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def challenge(spec: TestSpec, secret: bytes) -> dict:
    """The challenge file of a test: each call's inputs and collection seed."""
    calls = []
    for index, call in enumerate(spec.calls):
        seed = derive_seed(secret, spec.grade_id, index, "inputs")
        calls.append(
            {
                "check": call.check.name,
                "inputs": call.check.make_inputs(seed, call.params),
                "seed": derive_seed(secret, spec.grade_id, index, "collect"),
            }
        )
    return {"test": spec.grade_id, "calls": calls}


@dataclass(frozen=True)
class Verdict:
    """The outcome of one check call."""

    call: Call
    passed: bool
    message: str
    measured: str = ""  # what a public call's judge measured (a score), shown with its pass


def judge(
    spec: TestSpec, chall: dict, evidence_dir: Path, secret: bytes, missing: str
) -> list[Verdict]:
    """Judge every call of a test from its evidence file; `missing` says why one may be absent."""
    verdicts = []
    for index, call in enumerate(spec.calls):
        verdicts.append(judge_call(spec, index, call, chall, evidence_dir, secret, missing))
    return verdicts


def judge_call(
    spec: TestSpec,
    index: int,
    call: Call,
    chall: dict,
    evidence_dir: Path,
    secret: bytes,
    missing: str,
) -> Verdict:
    """The verdict of call `index`; a hidden call's failure names no input or threshold."""
    try:
        found = evidence.load(
            evidence_dir / spec.grade_id / f"{index}.pt", root=evidence_dir.parent
        )
    except evidence.EvidenceError as exc:
        absent = "was not written" in str(exc)
        return Verdict(call, False, missing if absent else f"unusable evidence: {exc}")
    if found.get("check") != call.check.name or not isinstance(found.get("evidence"), dict):
        return Verdict(call, False, "the evidence is not that of this check")
    inputs = chall["calls"][index]["inputs"]
    seed = derive_seed(secret, spec.grade_id, index, "judge")
    try:
        measured = call.check.verdict(inputs, found["evidence"], call.params, seed)
    except CheckFailed as exc:
        return Verdict(call, False, "failed" if call.hidden else str(exc))
    except Exception as exc:  # a judge meeting evidence it did not foresee: a failure, not a crash
        message = f"the evidence could not be judged ({type(exc).__name__})"
        return Verdict(call, False, "failed" if call.hidden else message)
    # a hidden call's measurement could tell where its bar lies: it is not shown
    return Verdict(call, True, "passed", "" if call.hidden or not measured else measured)
