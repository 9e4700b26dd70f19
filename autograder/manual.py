"""Manual grades: what a person enters in nbgrader's formgrader, in results.json and grades.csv.

formgrader writes a grade's `manual_score` (and a comment) into nbgrader's gradebook, and
`nbgrader export` reads it: a grade's score is its manual score where there is one, else its
auto score. `results.json`, the source of the grade table and of Gradescope, is written when a
submission is autograded and would go on saying "awaiting manual grading". `apply` brings
every results.json in line with the gradebook, so the grade table and grades.csv agree once a
grade is entered; `refresh` does that, regenerates the feedback of the labs it changed (the
students see the points and comments) and exports grades.csv again.

    python -m autograder.manual --course build/course
"""

import argparse
import json
import sys
from pathlib import Path

from autograder import course as course_
from autograder import demo
from autograder.intake import gradebook

AWAITING = "awaiting manual grading"  # job.manual_results' message for an ungraded answer
BY_HAND = "graded by hand: "


def entry(test: dict, grade, comment: str | None) -> dict:
    """A results.json test entry as the gradebook's grade has it now."""
    auto_lines = [
        line for line in (test.get("output") or "").splitlines() if not line.startswith(BY_HAND)
    ]
    if grade.manual_score is None:
        # not graded by hand (or the grade was cleared): the autograder's word stands
        score = 0.0 if grade.auto_score is None else float(grade.auto_score)
        output = AWAITING if grade.auto_score is None else "\n".join(auto_lines)
    else:
        score = float(grade.score)  # the manual score, with any extra credit
        note = f"{BY_HAND}{score:g}/{test['max_score']:g}" + (f" ({comment})" if comment else "")
        kept = [] if grade.auto_score is None else [line for line in auto_lines if line != AWAITING]
        output = "\n".join([*kept, note])
    status = "passed" if score >= test["max_score"] else "failed"
    return {**test, "score": score, "status": status, "output": output}


def comment_of(gb, grade_id: str, lab: str, student: str) -> str | None:
    """The grader's comment on a cell, where formgrader has one."""
    from nbgrader.api import MissingEntry

    try:
        text = gb.find_comment(grade_id, lab, lab, student).manual_comment
    except MissingEntry:
        return None
    return " ".join(text.split()) if text and text.strip() else None


def apply(course: Path) -> list[tuple[str, str, str, float]]:
    """Rewrite every results.json whose grades the gradebook has changed; return
    (student, lab, grade id, score) of every test entry that changed."""
    from nbgrader.api import MissingEntry

    changed = []
    with gradebook(course) as gb:
        for student, lab in course_.submissions(course):
            path = course / "autograded" / student / lab / "results.json"
            if not path.is_file():
                continue
            results = json.loads(path.read_text())
            tests = []
            for test in results["tests"]:
                try:
                    grade = gb.find_grade(test["name"], lab, lab, student)
                except MissingEntry:
                    tests.append(test)  # not a cell of the gradebook: leave it alone
                    continue
                new = entry(test, grade, comment_of(gb, test["name"], lab, student))
                if new != test:
                    changed.append((student, lab, test["name"], new["score"]))
                tests.append(new)
            if tests != results["tests"]:
                results["tests"] = tests
                results["score"] = sum(t["score"] for t in tests)
                path.write_text(json.dumps(results, indent=2) + "\n")
    return changed


def refresh(course: Path) -> list[tuple[str, str, str, float]]:
    """apply, then nbgrader's feedback for every lab it changed and its export to grades.csv
    (the same commands as the end of course.autograde)."""
    changed = apply(course)
    for lab in sorted({lab for _, lab, _, _ in changed}):
        course_.give_feedback(course, lab)
    result = course_.nbgrader(course, "export", "--to", str((course / "grades.csv").resolve()))
    if result.returncode != 0:
        raise RuntimeError(f"nbgrader export failed:\n{result.stdout}{result.stderr}")
    return changed


def main(argv: list[str] | None = None) -> int:
    """After grading in formgrader: results.json, feedback and grades.csv brought up to date."""
    p = argparse.ArgumentParser(prog="python -m autograder.manual", description=main.__doc__)
    p.add_argument("--course", default="build/course", help="nbgrader course directory")
    course = Path(p.parse_args(argv).course)
    changed = refresh(course)
    for student, lab, grade_id, score in changed:
        print(f"{student}/{lab} {grade_id}: {score:g}")
    print(demo.format_table(demo.grade_table(course)))
    print(f"{len(changed)} grade(s) changed; grades: {course / 'grades.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
