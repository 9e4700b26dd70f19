"""`autograder build` and `autograder check`: parse every template, render its three views,
report every error and warning; `build` writes all views or none."""

from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbgrader.nbgraderformat import MetadataValidator, ValidationError

from autograder.template import Template, TemplateError, read_template
from autograder.views import VIEWS, Rendered, render, syntax_errors, to_notebook


@dataclass
class Checked:
    """One template checked: its views (None if it does not parse), errors and warnings."""

    path: Path
    notebooks: dict[str, nbformat.NotebookNode] | None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def problems(self, strict: bool) -> list[str]:
        """What stops the build: the errors, and under --strict the warnings too."""
        return self.errors + (self.warnings if strict else [])

    def summary(self) -> str:
        """One line for the file: `PATH: ok` or `PATH: 2 errors, 1 warning`."""
        counts = [
            f"{n} {word}{'s' if n != 1 else ''}"
            for n, word in ((len(self.errors), "error"), (len(self.warnings), "warning"))
            if n
        ]
        return f"{self.path}: {', '.join(counts) or 'ok'}"


def build_views(template: Template) -> tuple[dict[str, nbformat.NotebookNode], list[str]]:
    """The three notebooks of one template, and the errors found rendering them."""
    notebooks, errors = {}, []
    for view in VIEWS:
        cells: list[Rendered] = render(template, view)
        errors += syntax_errors(template, view, cells)
        notebooks[view] = to_notebook(template, cells)
    try:
        MetadataValidator().validate_nb(notebooks["nbgrader"])
    except ValidationError as exc:
        errors.append(
            f"{template.path}:1: nbgrader rejects the metadata: {exc} (expected valid nbgrader cells)"
        )
    return notebooks, errors


def check(path: Path) -> Checked:
    """Parse and render one template in memory; nothing is written."""
    try:
        template = read_template(path)
    except TemplateError as exc:
        return Checked(path, None, exc.errors, exc.warnings)
    notebooks, errors = build_views(template)
    return Checked(path, notebooks, errors, template.warnings)


def build(paths: list[Path], out: Path, strict: bool = False) -> list[str]:
    """Write OUT/{student,solution,nbgrader}/NAME.ipynb for each template; return what stopped
    it: every error (and, if `strict`, every warning). See `build_checked` for the warnings."""
    return build_checked([check(p) for p in paths], out, strict)


def build_checked(checked: list[Checked], out: Path, strict: bool = False) -> list[str]:
    """Write the views of checked templates; return the problems instead if there are any.

    Nothing is written unless every template is valid: a half-built release is worse than none.
    """
    problems = [p for c in checked for p in c.problems(strict)]
    if problems:
        return problems
    for c in checked:
        for view, nb in (c.notebooks or {}).items():
            write_notebook(nb, out / view / f"{c.path.stem}.ipynb")
    return []


def write_notebook(nb: nbformat.NotebookNode, target: Path) -> None:
    """Write a notebook atomically (temp file, then rename)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".ipynb.tmp")
    nbformat.write(nb, tmp, version=4)
    tmp.replace(target)
