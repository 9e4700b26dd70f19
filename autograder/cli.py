"""The `autograder` command: build views, provision data, run the course workflow."""

import argparse
import sys
from pathlib import Path

from autograder import batch, course, demo
from autograder.build import Checked, build_checked, check

LABS = Path("labs")
STAND_IN = Path("tests/templates/mini.md")  # the demo's lab while labs/ is empty
NO_SANDBOX = (
    "run submissions' kernels outside the sandbox (where bubblewrap cannot run); a submission "
    "can then read and change the course: every result says so"
)


def report(checked: list[Checked], strict: bool) -> int:
    """Print every error and warning (errors first, in file order); return how many stop."""
    for c in checked:
        for line in c.errors + c.warnings:
            print(line, file=sys.stderr)
    return sum(len(c.problems(strict)) for c in checked)


def cmd_build(args: argparse.Namespace) -> int:
    """Build the views of the given templates; print every error and warning, and write
    nothing on an error (or, with --strict, on a warning)."""
    checked = [check(Path(p)) for p in args.templates]
    stopped = report(checked, args.strict)
    build_checked(checked, Path(args.out), args.strict)
    if stopped:
        why = " (--strict: warnings count as errors)" if args.strict else ""
        print(f"{stopped} error(s){why}; nothing written", file=sys.stderr)
        return 1
    print(f"built {len(args.templates)} template(s) into {args.out}/{{student,solution,nbgrader}}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Validate templates without writing: every error and warning, then one line per file."""
    checked = [check(Path(p)) for p in args.templates]
    stopped = report(checked, args.strict)
    for c in checked:
        print(c.summary())
    return 1 if stopped else 0


def add_strictness(p: argparse.ArgumentParser) -> None:
    """--warn (the default) reports slips and goes on; --strict makes every warning an error."""
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--strict", action="store_true", help="treat warnings as errors (the labs' CI uses this)"
    )
    group.add_argument(
        "--warn",
        dest="strict",
        action="store_false",
        help="print warnings and go on (default)",
    )


def cmd_release(args: argparse.Namespace) -> int:
    """Release nbgrader views with `nbgrader generate_assignment`."""
    for path in course.release(Path(args.course), [Path(p) for p in args.views]):
        print(f"released {path}")
    return 0


def cmd_autograde(args: argparse.Namespace) -> int:
    """Autograde the selected submissions; one that cannot be graded is reported, not fatal."""
    course_dir = Path(args.course)
    selection = batch.Selection(
        students=frozenset(args.student) if args.student else None,
        labs=frozenset(args.lab) if args.lab else None,
        changed=args.changed,
        force=args.force,
    )
    try:
        summary = course.autograde(
            course_dir,
            use_sandbox=not args.no_sandbox,
            selection=selection,
            workers=args.workers,
            scheduler=args.scheduler,
            kernels_per_device=args.kernels_per_device,
        )
    except batch.CourseBusy as exc:
        print(exc, file=sys.stderr)
        return 2
    print(demo.format_table(demo.grade_table(course_dir)))
    print("\n".join(summary.lines()))
    print(f"log: {course_dir / batch.LOG}")
    return 1 if summary.lost else 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Build, release and autograde the example submissions; print the grade table."""
    templates = [Path(t) for t in args.templates] or sorted(LABS.glob("*.md")) or [STAND_IN]
    out = Path(args.out)
    rows = demo.run_demo(templates, out, Path("examples"), use_sandbox=not args.no_sandbox)
    print(demo.format_table(rows))
    print(f"feedback:  {out / 'course' / 'feedback'}/STUDENT/LAB/LAB.html")
    print(f"grades:    {out / 'course' / 'grades.csv'}")
    print(f"results:   {out / 'course' / 'autograded'}/STUDENT/LAB/results.json")
    return 0


def cmd_collect(args: argparse.Namespace) -> int:
    """Import an LMS download into submitted/; one line per file; 1 if a file was refused."""
    from autograder import intake

    try:
        deadline = intake.parse_deadline(args.deadline) if args.deadline else None
        report = intake.collect(
            Path(args.source), args.lab, Path(args.course), args.pattern, args.force, deadline
        )
    except intake.IntakeError as exc:
        print(exc, file=sys.stderr)
        return 2
    print("\n".join(report.lines()))
    print(f"log: {Path(args.course) / intake.LOG}")
    return 1 if report.refused else 0


def cmd_roster(args: argparse.Namespace) -> int:
    """Fill nbgrader's student table from a CSV; 1 if a row was not imported."""
    from autograder import intake

    try:
        columns = intake.parse_columns(args.column or [])
        report = intake.load_roster_csv(Path(args.course), Path(args.csv), columns)
    except intake.IntakeError as exc:
        print(exc, file=sys.stderr)
        return 2
    print("\n".join(report.lines()))
    return 1 if report.problems else 0


def cmd_manual(args: argparse.Namespace) -> int:
    """After grading MANUAL answers in formgrader: results.json, feedback and grades.csv."""
    from autograder import manual

    return manual.main(["--course", args.course])


def cmd_gradescope(args: argparse.Namespace) -> int:
    """Write the Gradescope autograder zip of a released lab (docs/gradescope.md)."""
    from autograder import gradescope

    try:
        path = gradescope.bundle(
            args.lab,
            Path(args.course),
            Path(args.out) if args.out else None,
            sandbox_mode=args.sandbox,
            time_limit=args.time_limit,
        )
    except gradescope.BundleError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MB): upload it as the autograder of")
    print(f"the assignment on Gradescope with its timeout set to {args.time_limit} min or more")
    return 0


def parser() -> argparse.ArgumentParser:
    """The command line: one subcommand per workflow step."""
    top = argparse.ArgumentParser(prog="autograder", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)
    p = sub.add_parser("build", help="render student, solution and nbgrader views of templates")
    p.add_argument("--out", default="build", help="output directory (default: build)")
    p.add_argument("templates", nargs="+", metavar="TEMPLATE")
    add_strictness(p)
    p.set_defaults(func=cmd_build)
    p = sub.add_parser(
        "check", help="validate templates without writing (e.g. as a pre-commit hook)"
    )
    p.add_argument("templates", nargs="+", metavar="TEMPLATE")
    add_strictness(p)
    p.set_defaults(func=cmd_check)
    p = sub.add_parser("release", help="release nbgrader views with nbgrader generate_assignment")
    p.add_argument("--course", default="build/course", help="nbgrader course directory")
    p.add_argument("views", nargs="+", metavar="NBGRADER_VIEW")
    p.set_defaults(func=cmd_release)
    p = sub.add_parser("autograde", help="autograde submitted/STUDENT/LAB/, feedback, grades.csv")
    p.add_argument("--course", default="build/course", help="nbgrader course directory")
    p.add_argument("--no-sandbox", action="store_true", help=NO_SANDBOX)
    p.add_argument(
        "--workers",
        type=int,
        help="submissions graded at once on this machine (default: cores / threads per kernel, "
        "or CUDA devices x kernels per device)",
    )
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="grade on an existing Dask cluster (tcp://HOST:PORT) instead of this machine",
    )
    p.add_argument(
        "--kernels-per-device", type=int, default=1, help="grading kernels per CUDA device"
    )
    p.add_argument("--student", action="append", metavar="S", help="only this student (repeat)")
    p.add_argument("--lab", action="append", metavar="L", help="only this lab (repeat)")
    p.add_argument(
        "--changed",
        action="store_true",
        help="also regrade submissions whose bytes (or lab source) changed since graded",
    )
    p.add_argument("--force", action="store_true", help="regrade every selected submission")
    p.set_defaults(func=cmd_autograde)
    p = sub.add_parser("demo", help="grade three example submissions of every lab")
    p.add_argument("--out", default="build/demo", help="output directory (default: build/demo)")
    p.add_argument("--no-sandbox", action="store_true", help=NO_SANDBOX)
    p.add_argument("templates", nargs="*", metavar="TEMPLATE", help="labs (default: labs/*.md)")
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("collect", help="import an LMS download (Moodle, Canvas) into submitted/")
    p.add_argument(
        "source", metavar="ZIP|DIR", help="the LMS's zip of all submissions, or a folder"
    )
    p.add_argument("--lab", required=True, metavar="L", help="the released lab they are for")
    p.add_argument("--course", default="build/course", help="nbgrader course directory")
    p.add_argument(
        "--pattern",
        metavar="REGEX",
        help="read file names with this regex (searched in each path) instead of Moodle's and "
        "Canvas's layouts; named groups: student (an id of the roster) or name, optional late "
        "and timestamp",
    )
    p.add_argument(
        "--force", action="store_true", help="replace a different notebook already collected"
    )
    p.add_argument(
        "--deadline",
        metavar="ISO",
        help="e.g. 2025-03-01T23:59+01:00: files timed later are flagged late; also the lab's "
        "due date in the gradebook",
    )
    p.set_defaults(func=cmd_collect)
    p = sub.add_parser(
        "roster", help="fill nbgrader's student table from a CSV (names in grades.csv)"
    )
    p.add_argument("csv", metavar="CSV", help="columns id, first_name, last_name, email")
    p.add_argument("--course", default="build/course", help="nbgrader course directory")
    p.add_argument(
        "--column",
        action="append",
        metavar="FIELD=HEADER",
        help="read FIELD (id, first_name, last_name, email, lms_user_id) from the column HEADER "
        "(repeat), e.g. --column id=ID",
    )
    p.set_defaults(func=cmd_roster)
    p = sub.add_parser(
        "manual", help="after grading in formgrader: manual scores into results, feedback, grades"
    )
    p.add_argument("--course", default="build/course", help="nbgrader course directory")
    p.set_defaults(func=cmd_manual)
    p = sub.add_parser("gradescope", help="write a Gradescope autograder zip for a released lab")
    p.add_argument("lab", metavar="LAB", help="a lab released in the course")
    p.add_argument("--course", default="build/course", help="nbgrader course directory")
    p.add_argument(
        "--out", metavar="ZIP", help="the zip to write (default: build/gradescope/LAB.zip)"
    )
    p.add_argument(
        "--sandbox",
        choices=("off", "auto", "on"),
        default="off",
        help="grade in bubblewrap on Gradescope: off (default: Gradescope's container is the "
        "isolation), auto (where bubblewrap works there), on (refuse to grade without it)",
    )
    p.add_argument(
        "--time-limit",
        type=int,
        default=10,
        metavar="MINUTES",
        help="the assignment's autograder timeout on Gradescope (default 10, Gradescope's): "
        "grading stops 90 s before it, so results.json is always written",
    )
    p.set_defaults(func=cmd_gradescope)
    return top


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    args = parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
