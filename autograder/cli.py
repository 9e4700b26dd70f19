"""The `autograder` command: build views, provision data, run the course workflow."""

import argparse
import sys
from pathlib import Path

from autograder.build import build


def cmd_build(args: argparse.Namespace) -> int:
    """Build the views of the given templates; print every error and write nothing on error."""
    errors = build([Path(p) for p in args.templates], Path(args.out))
    for error in errors:
        print(error, file=sys.stderr)
    if errors:
        print(f"{len(errors)} error(s); nothing written", file=sys.stderr)
        return 1
    print(f"built {len(args.templates)} template(s) into {args.out}/{{student,solution,nbgrader}}")
    return 0


def parser() -> argparse.ArgumentParser:
    """The command line: one subcommand per workflow step."""
    top = argparse.ArgumentParser(prog="autograder", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)
    p = sub.add_parser("build", help="render student, solution and nbgrader views of templates")
    p.add_argument("--out", default="build", help="output directory (default: build)")
    p.add_argument("templates", nargs="+", metavar="TEMPLATE")
    p.set_defaults(func=cmd_build)
    return top


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    args = parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
