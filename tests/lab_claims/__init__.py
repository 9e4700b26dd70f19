"""What each lab's text says its figures show, checked on the executed solution.

The slow tier runs each real lab once (tests/test_e2e.py::test_demo_of_the_real_labs grades the
full solution); `check(lab, notebook)` is then called with that executed notebook. A lab states
the numbers behind a figure in its own output (a student would rather read "digit 2: 0.031 vs
0.058" than guess it from a plot), and the module `tests/lab_claims/labNN.py` of that lab parses them
and asserts what the text claims. A lab without a module has no claims to check.
"""

from __future__ import annotations

import importlib
import re

from nbformat import NotebookNode


def text_outputs(nb: NotebookNode) -> list[str]:
    """The text each code cell printed or displayed (stdout and text/plain), one per cell."""
    texts = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        parts = []
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stdout":
                parts.append(output.get("text", ""))
            elif "data" in output and "text/plain" in output["data"]:
                parts.append(output["data"]["text/plain"])
        texts.append("".join(parts))
    return texts


def printed(nb: NotebookNode) -> str:
    """Everything the notebook printed, in cell order."""
    return "\n".join(text_outputs(nb))


def number_after(text: str, label: str) -> float:
    """The number printed right after `label` (e.g. `label: 0.031`), or AssertionError."""
    found = re.search(re.escape(label) + r"\s*[:=]?\s*(-?[0-9.]+(?:e-?[0-9]+)?)", text)
    assert found, f"the executed solution never printed {label!r}"
    return float(found.group(1))


def check(lab: str, nb: NotebookNode) -> list[str]:
    """Assert the claims of `lab` on its executed solution; the names of the claims checked."""
    module_name = f"tests.lab_claims.lab{lab[:2]}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        return []
    return module.check(nb)


# Lab 03's test -ELBO varies by about 1.3 nats between training seeds (its hidden bar's comment)
# and the graded run scores 8000 of the 10 000 test images: 5 nats is about 4 sd.
ACROSS_LABS_NATS = 5.0
# Lab 02's graded model is scored on the same 2000 held-out images as the quote: the judge's one
# sampled code varies it by 0.28 nats (sd), training seeds by 0.8 nats (range over eight).
LAB02_QUOTE_NATS = 2.0


def measured_by_check(results: dict, grade_id: str, label: str) -> float:
    """The score a public check measured, from a graded submission's results.json."""
    test = next((t for t in results["tests"] if t["name"] == grade_id), None)
    assert test, f"results.json has no test {grade_id!r}"
    return number_after(test.get("output", ""), label)


def table_row(lab04: NotebookNode, name: str) -> float:
    """The nats of one row of lab 04's unit table."""
    row = re.search(rf"^{re.escape(name)}\s{{2,}}.*?\s{{2,}}([0-9.]+)\s+[0-9.]+$", printed(lab04), re.M)
    assert row, f"lab 04's unit table has no number for {name!r}"
    return float(row.group(1))


def check_across(executed: dict[str, NotebookNode], results: dict[str, dict]) -> list[str]:
    """Lab 04's unit table quotes labs 02 and 03: each number must be what that lab's graded
    run measured (lab 02: its check's score, in the results; lab 03: its printed test -ELBO)."""
    lab = {name[:2]: nb for name, nb in executed.items()}
    scores = {name[:2]: r for name, r in results.items()}
    if "04" not in lab:
        return []
    claims = []
    if "03" in lab:
        epochs = re.findall(r"epoch \d: test -ELBO ([0-9.]+) = ", printed(lab["03"]))
        assert epochs, "lab 03's executed solution printed no test -ELBO"
        quoted, measured = table_row(lab["04"], "Lab 3, conv VAE"), float(epochs[-1])
        assert abs(quoted - measured) <= ACROSS_LABS_NATS, (
            f"lab 04's table quotes {quoted} nats for lab 3, whose run printed {measured}"
        )
        claims.append(f"unit table: lab 3's {quoted} nats against its run's {measured}")
    if "02" in scores:
        measured = measured_by_check(scores["02"], "trained-vae", "negative ELBO")
        quoted = table_row(lab["04"], "Lab 2, MLP VAE")
        assert abs(quoted - measured) <= LAB02_QUOTE_NATS, (
            f"lab 04's table quotes {quoted} nats for lab 2, whose graded model scored {measured}"
        )
        claims.append(f"unit table: lab 2's {quoted} nats against its check's {measured}")
    return claims
