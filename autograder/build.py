"""`autograder build`: parse every template, render its three views, write them all or none."""

from pathlib import Path

import nbformat
from nbgrader.nbgraderformat import MetadataValidator, ValidationError

from autograder.template import Template, TemplateError, read_template
from autograder.views import VIEWS, Rendered, render, syntax_errors, to_notebook


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


def build(paths: list[Path], out: Path) -> list[str]:
    """Write OUT/{student,solution,nbgrader}/NAME.ipynb for each template; return the errors.

    Nothing is written unless every template is valid: a half-built release is worse than none.
    """
    errors: list[str] = []
    built: dict[Path, dict[str, nbformat.NotebookNode]] = {}
    for path in paths:
        try:
            notebooks, view_errors = build_views(read_template(path))
        except TemplateError as exc:
            errors += exc.errors
            continue
        errors += view_errors
        built[path] = notebooks
    if errors:
        return errors
    for path, notebooks in built.items():
        for view, nb in notebooks.items():
            write_notebook(nb, out / view / f"{path.stem}.ipynb")
    return []


def write_notebook(nb: nbformat.NotebookNode, target: Path) -> None:
    """Write a notebook atomically (temp file, then rename)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".ipynb.tmp")
    nbformat.write(nb, tmp, version=4)
    tmp.replace(target)
