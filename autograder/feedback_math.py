"""Feedback that shows its maths offline: the LaTeX of the markdown is rendered to MathML when
the feedback is written, and the script that would fetch MathJax from a CDN is removed.

nbgrader's feedback is nbconvert HTML that leaves `$...$` in the page for MathJax, loaded from
cdnjs: opened offline (a student's download, a firewalled lab) the formulas show as raw TeX.
Browsers render MathML themselves (MathML Core: Chromium 109+, Firefox, Safari), so the page
needs no script and no network. latex2mathml converts; a formula it cannot read stays as TeX
in a <code> element, never lost.
"""

import html
from pathlib import Path

from bs4 import BeautifulSoup
from latex2mathml.converter import convert

# (opening, closing, display) in the order they are tried at one position
DELIMITERS = (("$$", "$$", True), ("\\[", "\\]", True), ("\\(", "\\)", False), ("$", "$", False))
LONGEST = 4000  # characters of one formula; a longer one stays as it was
MOST = 5000  # formulas converted on one page (the labs have about 80); the rest stay as TeX
RENDERED = ("rendered_html", "jp-RenderedMarkdown")  # nbconvert's classic and lab templates
SKIP = {"code", "pre", "script", "style", "math"}


def mathml(tex: str, display: bool) -> str:
    """The MathML of one formula, or the TeX in <code> if latex2mathml cannot read it."""
    try:
        return convert(tex.strip(), display="block" if display else "inline")
    except Exception:  # noqa: BLE001 -- any parse failure: show the source, lose nothing
        return f"<code>{tex}</code>"


def render_text(text: str, budget: list[int] | None = None) -> str | None:
    """`text` with every formula as MathML, or None if it holds none.

    One pass with a cursor and remembered searches, no backtracking regex: the text is the
    student's, and a page of unclosed `$` or `\\(` must cost the grader linear time.
    """
    find = Finder(text)
    budget = budget if budget is not None else [MOST]
    out, i, found = [], 0, False
    while budget[0] > 0 and (start := next_opening(find, i)) is not None:
        at, (opening, closing, display) = start
        end = find(closing, at + len(opening))
        tex = text[at + len(opening) : end] if end >= 0 else ""
        if (
            end < 0
            or not tex.strip()
            or len(tex) > LONGEST
            or not plausible(opening, tex, text, end)
        ):
            out.append(
                html.escape(text[i : at + len(opening)], quote=False)
            )  # not a formula: keep the sign
            i = at + len(opening)
            continue
        out += [html.escape(text[i:at], quote=False), mathml(tex, display)]
        i, found = end + len(closing), True
        budget[0] -= 1
    out.append(html.escape(text[i:], quote=False))
    return "".join(out) if found else None


class Finder:
    """str.find that remembers its last answer per substring: searching again from a later
    start costs nothing while that answer still lies ahead (or there was none)."""

    def __init__(self, text: str):
        self.text = text
        self.last: dict[str, tuple[int, int]] = {}  # substring -> (searched from, found at)

    def __call__(self, sub: str, start: int) -> int:
        if sub in self.last:
            since, at = self.last[sub]
            if start >= since and (at < 0 or at >= start):
                return at
        at = self.text.find(sub, start)
        self.last[sub] = (start, at)
        return at


def next_opening(find: Finder, start: int) -> tuple[int, tuple[str, str, bool]] | None:
    """The first opening delimiter at or after `start` (`$$` before `$` at the same place)."""
    best = None
    for delimiter in DELIMITERS:
        at = find(delimiter[0], start)
        if at >= 0 and (best is None or at < best[0]):
            best = (at, delimiter)
    return best


def plausible(opening: str, tex: str, text: str, end: int) -> bool:
    """A `$...$` pair is maths unless it looks like prices: `$5 and $6` (space inside a
    delimiter, or a digit right after the closing one)."""
    if opening != "$":
        return True
    after = text[end + 1 : end + 2]
    return not (tex[0].isspace() or tex[-1].isspace() or after.isdigit())


def offline_math(html: str) -> str:
    """The page with its markdown maths as MathML and no MathJax scripts."""
    soup = BeautifulSoup(html, "html.parser")
    for script in soup.find_all("script"):
        if "mathjax" in (script.get("src") or "").lower() or script.get("type") == (
            "text/x-mathjax-config"
        ):
            script.decompose()
    budget = [MOST]
    for block in soup.find_all(class_=list(RENDERED)):
        for node in list(block.find_all(string=True)):
            if any(parent.name in SKIP for parent in node.parents):
                continue
            rendered = render_text(str(node), budget)
            if rendered is not None:
                node.replace_with(BeautifulSoup(rendered, "html.parser"))
    return str(soup)


def rewrite(path: Path) -> None:
    """Rewrite one feedback page in place."""
    path.write_text(offline_math(path.read_text(encoding="utf-8")), encoding="utf-8")
