"""Benchmark class grading: one lab's demo students repeated into a class, graded with 1 and
with N workers in one run; prints wall times, the ratio, per-submission times, and what a
course of 200 students x 4 labs would take on this machine.

    .venv/bin/python scripts/benchmark_class.py labs/01-autoencoders.md --class-size 24 --workers 2

Not a test: it takes an hour on a 2-core machine for a real lab. It writes build/benchmark/.
"""

import argparse
import json
import os
import shutil
import statistics
import time
from pathlib import Path

from autograder import batch, course, demo
from autograder.build import build

ROOT = Path(__file__).resolve().parent.parent


def make_class(template: Path, out: Path, size: int) -> Path:
    """Build and release the lab with the demo's three students, then copy them to `size`."""
    views = out / "views"
    shutil.rmtree(out, ignore_errors=True)
    errors = build([template], views)
    if errors:
        raise SystemExit("\n".join(errors))
    root = out / "course"
    (released,) = course.release(root, [views / "nbgrader" / f"{template.stem}.ipynb"])
    demo.submit(
        root, template.stem, released, views / "solution" / released.name, ROOT / "examples"
    )
    originals = sorted(p.name for p in (root / "submitted").iterdir())
    for n in range(len(originals), size):
        name = originals[n % len(originals)]
        shutil.copytree(root / "submitted" / name, root / "submitted" / f"{name}-{n}")
    return root


def grade(root: Path, workers: int) -> tuple[float, batch.Summary]:
    started = time.monotonic()
    summary = course.autograde(root, workers=workers, selection=batch.Selection(force=True))
    return time.monotonic() - started, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("template", type=Path)
    parser.add_argument("--class-size", type=int, default=24)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "benchmark")
    args = parser.parse_args()
    root = make_class(args.template, args.out, args.class_size)
    report = {"lab": args.template.stem, "submissions": args.class_size, "cpus": os.cpu_count()}
    for workers in (1, args.workers):
        wall, summary = grade(root, workers)
        seconds = [o.result.seconds for o in summary.outcomes]
        report[f"workers_{workers}"] = {
            "wall_s": round(wall, 1),
            "per_submission_mean_s": round(statistics.mean(seconds), 1),
            "per_submission_max_s": round(max(seconds), 1),
            "throughput_s_per_submission": round(wall / len(seconds), 1),
            "lost": len(summary.lost),
        }
        print(f"workers={workers}: {wall:.0f} s wall, " + "; ".join(summary.lines()), flush=True)
    one, many = report["workers_1"]["wall_s"], report[f"workers_{args.workers}"]["wall_s"]
    report["speed_up"] = round(one / many, 2)
    per = report[f"workers_{args.workers}"]["throughput_s_per_submission"]
    report["projected_200x4_hours_here"] = round(800 * per / 3600, 1)
    print(json.dumps(report, indent=2))
    (args.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
