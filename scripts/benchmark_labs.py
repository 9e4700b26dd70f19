"""Time each lab's solution notebook as the grader runs it: one torch thread, a fresh kernel.

    python scripts/benchmark_labs.py [--runs 3] [labs/01-autoencoders.md ...]

Builds the solution view of each lab template (default: every lab in labs/), executes it
`--runs` times with nbclient under OMP_NUM_THREADS=MKL_NUM_THREADS=1 (the grader's
AUTOGRADER_THREADS default) and prints every run's wall time, the median, and the slowest
cell of the median run. Data come from $DGM_DATA or ~/.cache/dgm-labs/data (`make data`).
This is a benchmark, not a test: the numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autograder import build  # noqa: E402


def solution_notebook(template: Path, out: Path) -> Path:
    """The solution view of `template`, built into `out`."""
    build.build([template], out)
    return out / "solution" / f"{template.stem}.ipynb"


def execute_timed(notebook: Path, timeout: int) -> tuple[float, list[float]]:
    """(total seconds, seconds per code cell) of one run in a fresh kernel, in a scratch folder."""
    nb = nbformat.read(notebook, as_version=4)
    cells: list[float] = []

    class Timed(NotebookClient):
        async def async_execute_cell(self, cell, cell_index, **kwargs):  # noqa: ANN001
            start = time.perf_counter()
            result = await super().async_execute_cell(cell, cell_index, **kwargs)
            if cell.cell_type == "code":
                cells.append(time.perf_counter() - start)
            return result

    with tempfile.TemporaryDirectory() as scratch:
        client = Timed(
            nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": scratch}}
        )
        start = time.perf_counter()
        client.execute()
        return time.perf_counter() - start, cells


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("labs", nargs="*", type=Path)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--timeout", type=int, default=900, help="seconds per cell")
    args = parser.parse_args(argv)
    labs = args.labs or sorted((ROOT / "labs").glob("*.md"))
    os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    print(f"{'lab':28} {'runs (s)':30} {'median':>7}  slowest cell of the median run")
    with tempfile.TemporaryDirectory() as out:
        for lab in labs:
            notebook = solution_notebook(lab, Path(out) / lab.stem)
            runs = [execute_timed(notebook, args.timeout) for _ in range(args.runs)]
            times = [total for total, _ in runs]
            median = statistics.median(times)
            cells = min(runs, key=lambda r: abs(r[0] - median))[1]
            slowest = max(range(len(cells)), key=cells.__getitem__)
            shown = " ".join(f"{t:.0f}" for t in times)
            print(
                f"{lab.stem:28} {shown:30} {median:7.0f}  code cell {slowest + 1}: "
                f"{cells[slowest]:.0f} s",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
