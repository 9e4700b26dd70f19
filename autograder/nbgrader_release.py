"""What `nbgrader generate_assignment` runs for this course, so the release equals the
student view: nbgrader's own preprocessors, with two changes made through its configuration.

- Each region's stub comes from the nbgrader view's cell metadata (a placeholder chosen where
  the region stands, see stubs.py); nbgrader's ClearSolutions has one stub for all regions.
- Cells wholly inside a region that spans cells are removed, by nbconvert's
  TagRemovePreprocessor, before nbgrader records or checksums any cell.
"""

import re

from nbconvert.preprocessors import TagRemovePreprocessor
from nbgrader.converters import GenerateAssignment
from nbgrader.preprocessors import ClearSolutions

from autograder.views import SOLUTION_ONLY_TAG, STUBS_KEY


class ClearRegions(ClearSolutions):
    """ClearSolutions whose stub for the k-th solution marker of a cell is the k-th of the
    cell's `metadata[STUBS_KEY]["stubs"]` (an empty stub leaves no line); cells without that
    metadata get the configured `code_stub`, as in nbgrader."""

    def _replace_solution_region(self, cell, language):
        stubs = cell.metadata.pop(STUBS_KEY, {}).get("stubs")
        if stubs is None or cell.cell_type != "code":
            return super()._replace_solution_region(cell, language)
        out, inside, replaced = [], False, False
        pending = list(stubs)
        for line in cell.source.split("\n"):
            if self.begin_solution_delimeter in line:
                if inside or not pending:
                    raise RuntimeError(f"solution markers do not match the {STUBS_KEY} stubs")
                inside = replaced = True
                indent = re.match(r"\s*", line).group(0)
                stub = pending.pop(0)
                out += [indent + text for text in stub.split("\n")] if stub else []
            elif self.end_solution_delimeter in line:
                inside = False
            elif not inside:
                out.append(line)
        if inside or pending:
            raise RuntimeError(f"solution markers do not match the {STUBS_KEY} stubs")
        cell.source = "\n".join(out)
        return replaced


def preprocessors() -> list[type]:
    """GenerateAssignment's preprocessors, in nbgrader's order, with the two changes above."""
    default = GenerateAssignment.class_traits()["preprocessors"].default()
    swapped = [ClearRegions if p is ClearSolutions else p for p in default]
    return [TagRemovePreprocessor, *swapped]


CONFIG = f"""\
# Regions' own stubs and cells that only the solution has (autograder/nbgrader_release.py).
from autograder.nbgrader_release import preprocessors
c.GenerateAssignment.preprocessors = preprocessors()
c.TagRemovePreprocessor.enabled = True
c.TagRemovePreprocessor.remove_cell_tags = {{{SOLUTION_ONLY_TAG!r}}}
"""
