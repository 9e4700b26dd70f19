"""Every lab of labs/ through its Gradescope autograder zip, as Gradescope would run it.

Builds and releases the labs, writes each lab's zip (`autograder gradescope`), and grades the
demo's full, partial and untouched submissions (autograder.demo) with the zip's run_autograder
in Gradescope's directories laid out under --out (autograder.gradescope.simulate: this venv's
Python in place of setup.sh's). Checks each results.json against Gradescope's format and the
scores (full: every autograded point, untouched: 0, partial: between; tests with hidden checks
after_published), and prints a table with the times and the peak memory of each run. Not part
of `make test`: the real labs take minutes each (tests/test_gradescope.py grades the test lab).

    .venv/bin/python scripts/gradescope_all_labs.py [--out build/gradescope-all] [LAB.md ...]
"""

import argparse
import shutil
import sys
import threading
import time
from pathlib import Path

import psutil

from autograder import course, demo, gradescope, worker
from autograder.build import build

ROOT = Path(__file__).resolve().parent.parent


class PeakMemory(threading.Thread):
    """The largest resident memory of this process's descendants together (the grader and
    the kernel it starts) while the block runs, sampled every half second."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak, self.done = 0, threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.5):
            total = 0
            for child in psutil.Process().children(recursive=True):
                try:
                    total += child.memory_info().rss
                except psutil.Error:
                    continue
            self.peak = max(self.peak, total)

    def __enter__(self) -> "PeakMemory":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.join()


def grade_lab(course_dir: Path, lab: str, out: Path, time_limit: int) -> tuple[list, list]:
    """The lab's zip, its three submissions graded in the layout: rows and problems."""
    started = time.monotonic()
    zipped = gradescope.bundle(lab, course_dir, out / "zips" / f"{lab}.zip", time_limit=time_limit)
    print(
        f"{lab}: zip {zipped.stat().st_size / 2**20:.1f} MB in {time.monotonic() - started:.0f} s"
    )
    cells = gradescope.graded_cells(
        worker.read_notebook(course_dir / "source" / lab / f"{lab}.ipynb"),
        worker.read_notebook(course_dir / "release" / lab / f"{lab}.ipynb"),
    )
    hidden = {c.grade_id for c in cells if c.hidden}
    rows, problems = [], []
    for student in demo.STUDENTS:
        notebook = (course_dir / "submitted" / student / lab / f"{lab}.ipynb").read_bytes()
        started = time.monotonic()
        with PeakMemory() as memory:
            doc, _ = gradescope.simulate(
                zipped, out / "roots" / lab / student, {f"{lab}.ipynb": notebook}
            )
        seconds = time.monotonic() - started
        problems += [f"{lab}/{student}: {p}" for p in gradescope.validate(doc)]
        late = {t["name"] for t in doc["tests"] if t["visibility"] == "after_published"}
        if late != hidden:
            problems.append(
                f"{lab}/{student}: after_published {sorted(late)}, expected {sorted(hidden)}"
            )
        rows.append((lab, student, doc, seconds, memory.peak, len(late)))
        print(f"  {student}: {doc['score']:g} in {seconds:.0f} s", flush=True)
    return rows, problems + score_problems(lab, {r[1]: r[2] for r in rows})


def score_problems(lab: str, docs: dict[str, dict]) -> list[str]:
    """Full earns every autograded point, untouched none, partial some."""
    full, partial, untouched = (docs[s]["score"] for s in ("full", "partial", "untouched"))
    top = docs["full"]["extra_data"]["max_score"]
    problems = [f"{lab}: full earned {full:g} of {top:g}"] if full != top else []
    problems += [f"{lab}: untouched earned {untouched:g}"] if untouched != 0 else []
    if not 0 < partial < full:
        problems.append(f"{lab}: partial earned {partial:g}, expected between 0 and {full:g}")
    return problems


def table(rows: list) -> str:
    head = f"{'lab':<22} {'student':<10} {'score':>6} {'auto':>5} {'hand':>5} {'tests':>5} "
    head += f"{'late':>4} {'run s':>6} {'grade s':>7} {'peak MB':>7}  output (first line)"
    lines = [head]
    for lab, student, doc, seconds, peak, late in rows:
        extra = doc["extra_data"]
        first = doc["output"].splitlines()[0] if doc["output"] else ""
        lines.append(
            f"{lab:<22} {student:<10} {doc['score']:>6g} {extra['max_score']:>5g} "
            f"{extra['manual_points']:>5g} {len(doc['tests']):>5} {late:>4} {seconds:>6.0f} "
            f"{doc['execution_time']:>7.0f} {peak / 2**20:>7.0f}  {first[:60]}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="build/gradescope-all", help="scratch directory")
    parser.add_argument("--time-limit", type=int, default=20, metavar="MINUTES")
    parser.add_argument("labs", nargs="*", metavar="LAB.md", help="default: labs/*.md")
    args = parser.parse_args(argv)
    labs = [Path(p) for p in args.labs] or sorted((ROOT / "labs").glob("*.md"))
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    started = time.monotonic()
    if errors := build(labs, out / "views"):
        print("\n".join(errors), file=sys.stderr)
        return 1
    views = [out / "views" / "nbgrader" / f"{lab.stem}.ipynb" for lab in labs]
    rows, problems = [], []
    for release in course.release(out / "course", views):
        lab = release.parent.name
        solution = out / "views" / "solution" / release.name
        demo.submit(out / "course", lab, release, solution, ROOT / "examples")
        lab_rows, lab_problems = grade_lab(out / "course", lab, out, args.time_limit)
        rows, problems = rows + lab_rows, problems + lab_problems
    print(table(rows))
    print(f"{len(rows)} submissions of {len(labs)} labs in {time.monotonic() - started:.0f} s")
    for problem in problems:
        print(f"PROBLEM: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
