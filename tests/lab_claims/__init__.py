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
