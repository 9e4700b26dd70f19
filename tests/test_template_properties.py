"""The views' properties over thousands of random templates (tests/template_generator.py).

Every template the generator writes has a solution that parses and a stub for each region
that makes its cell parse, so for every one the build must give: no errors or warnings; code
cells that parse in the student and solution views; no line of a region's body in the student
view; every hint in the student view; and a solution view that is the template minus its tag
lines, cell for cell. Failures are collected over all templates and reported by kind, with
the seed of each failing template: `python tests/template_generator.py SEED` prints it.

The templates are built once for the module; a second test compares each student view with
the one the generator expects (its stubs, hints and removed cells), exactly.

`TEMPLATE_PROPERTY_N=200` checks fewer templates (the default is N below); `-s` shows the time.
"""

import ast
import os
import random
import tempfile
import time
from collections import Counter, defaultdict
from functools import cache
from pathlib import Path

import jupytext
import pytest

from autograder.build import build_views
from autograder.template import TemplateError, read_template
from autograder.views import python_source
from tests.conftest import HEADER
from tests.template_generator import (
    FEATURES,
    PLACEMENTS,
    GeneratedTemplate,
    generate,
    tag_line,
)

N = int(os.environ.get("TEMPLATE_PROPERTY_N", "2000"))
KIND_N, MIN_PER_KIND = 2000, 50  # every placement and feature at least 50 times in 2000
STUDENT_DIFFERS = "student view differs from the generator's"

Failures = dict[str, list[tuple[int, str]]]  # failure kind -> (seed, first example) per template


@cache
def templates(n: int) -> list[GeneratedTemplate]:
    return [generate(random.Random(seed)) for seed in range(n)]


def does_not_parse(source: str) -> str | None:
    try:
        ast.parse(python_source(source))
    except SyntaxError as exc:
        return f"line {exc.lineno}: {exc.msg}"
    return None


def first_difference(got: list[tuple[str, str]], want: list[tuple[str, str]]) -> str:
    """Where two views (lists of (cell kind, source)) first differ, for a failure message."""
    for i, (a, b) in enumerate(zip(got, want, strict=False)):
        if a[0] != b[0]:
            return f"cell {i}: a {a[0]} cell where a {b[0]} cell was expected"
        if a[1] != b[1]:
            lines = zip(a[1].split("\n") + [""], b[1].split("\n") + [""], strict=False)
            x, y = next((x, y) for x, y in lines if x != y)
            return f"cell {i}: {x!r} where {y!r} was expected"
    return f"{len(got)} cells where {len(want)} were expected"


def check(path: Path, g: GeneratedTemplate) -> dict[str, str]:
    """What is wrong with the views of one template: failure kind -> first example."""
    path.write_text(g.text)
    try:
        template = read_template(path)
    except TemplateError as exc:
        return {"template errors": exc.errors[0]}
    except Exception as exc:  # a crash is reported with the seed like any other failure
        return {"crashes": f"read_template: {exc!r}"}
    found: dict[str, str] = {}
    if getattr(template, "warnings", None):
        found["warnings"] = template.warnings[0]
    try:
        notebooks, errors = build_views(template)
    except Exception as exc:
        return {**found, "crashes": f"build_views: {exc!r}"}
    if errors:
        found["build errors"] = errors[0]
    for view in ("student", "solution"):
        for i, cell in enumerate(notebooks[view].cells):
            if cell.cell_type == "code" and (why := does_not_parse(cell.source)):
                found.setdefault("unparsable cells", f"{view} view, cell {i}: {why}")
            if any(tag_line(line) for line in cell.source.split("\n")):
                found.setdefault("tag lines shown", f"{view} view, cell {i}")
    student = [(cell.cell_type, cell.source) for cell in notebooks["student"].cells]
    shown = {line.strip() for _, source in student for line in source.split("\n")}
    if leaked := shown & g.region_only:
        found["leaks"] = f"{len(leaked)} region lines, e.g. {min(leaked)!r}"
    missing = {h for h in g.hints if h not in shown and f"# TODO: {h}" not in shown}
    if missing:
        found["missing hints"] = f"{len(missing)} hints, e.g. {min(missing)!r}"
    solution = [cell.source for cell in notebooks["solution"].cells]
    if solution != g.solution:
        cells = [(c.cell_type, c.source) for c in jupytext.reads(g.text, fmt="md").cells]
        if cells != g.cells:  # not the builder's fault: the generator wrote other cells
            found["generator: jupytext reads other cells"] = f"{len(cells)} cells"
        else:
            found["solution view differs"] = first_difference(
                [("", s) for s in solution], [("", s) for s in g.solution]
            )
    if student != g.student:
        found[STUDENT_DIFFERS] = first_difference(student, g.student)
    return found


@cache
def outcome() -> tuple[Failures, float]:
    """Every template built and checked once for the module: failures and seconds taken."""
    start = time.perf_counter()
    failures: Failures = defaultdict(list)
    with tempfile.TemporaryDirectory() as tmp:
        for seed, g in enumerate(templates(N)):
            for kind, example in check(Path(tmp) / f"seed-{seed}.md", g).items():
                failures[kind].append((seed, example))
    return dict(failures), time.perf_counter() - start


def report(failures: Failures) -> str:
    return "(print a template: python tests/template_generator.py SEED)\n" + "\n".join(
        f"{kind}: {len(cases)} of {N} templates; first (seed {cases[0][0]}): {cases[0][1]}\n"
        f"  seeds: {' '.join(str(seed) for seed, _ in cases)}"
        for kind, cases in sorted(failures.items())
    )


def test_views_of_generated_templates() -> None:
    failures, took = outcome()
    regions = sum(g.kinds[k] for g in templates(N) for k in PLACEMENTS)
    print(f"{N} templates ({regions} regions) generated, built and checked in {took:.1f} s")
    failed = {k: v for k, v in failures.items() if k != STUDENT_DIFFERS}
    if failed:
        pytest.fail("views of generated templates fail " + report(failed), pytrace=False)


def test_student_views_of_generated_templates_are_the_expected_ones() -> None:
    """Exactly the generator's own student view: the stub it expects at each placement (the
    first of `...`, `...,`, `...: ...,`, `**...,` that belongs there), the hints in template
    order, the cells it removes."""
    failures, _ = outcome()
    differ = {k: v for k, v in failures.items() if k == STUDENT_DIFFERS}
    if differ:
        pytest.fail("student views differ " + report(differ), pytrace=False)


def test_generator_writes_every_placement_often() -> None:
    counts: Counter = Counter()
    for g in templates(max(N, KIND_N))[:KIND_N]:
        counts += g.kinds
    rare = {k: counts[k] for k in PLACEMENTS + FEATURES if counts[k] < MIN_PER_KIND}
    assert not rare, f"placements or features under {MIN_PER_KIND} in {KIND_N} templates: {rare}"


def test_generator_is_deterministic_and_writes_the_cells_it_reports() -> None:
    assert generate(random.Random(0)).text.startswith(HEADER)
    for seed in range(100):
        g = templates(max(N, KIND_N))[seed]
        assert generate(random.Random(seed)).text == g.text
        notebook = jupytext.reads(g.text, fmt="md")
        assert [(c.cell_type, c.source) for c in notebook.cells] == g.cells, seed
        assert all(not c.metadata for c in notebook.cells), seed
        assert len(g.hints) == sum(1 for line in g.text.split("\n") if "#!MSG" in line), seed
