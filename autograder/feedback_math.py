"""Feedback that shows its maths offline: the LaTeX of the markdown is rendered to MathML when
the feedback is written, and the script that would fetch MathJax from a CDN is removed.

nbgrader's feedback is nbconvert HTML that leaves `$...$` in the page for MathJax, loaded from
cdnjs: opened offline (a student's download, a firewalled lab) the formulas show as raw TeX.
Browsers render MathML themselves (MathML Core: Chromium 109+, Firefox, Safari), so the page
needs no script and no network. latex2mathml converts; a formula it cannot read stays as TeX
in a <code> element, never lost.
"""

import re
from pathlib import Path

from bs4 import BeautifulSoup
from latex2mathml.converter import convert

# $$display$$, \[display\], $inline$ (not `$ 5` prices: no space inside the delimiters), \(inline\)
MATH = re.compile(
    r"\$\$(?P<d1>.+?)\$\$|\\\[(?P<d2>.+?)\\\]"
    r"|(?<![\\$])\$(?!\s)(?P<i1>[^$]+?)(?<![\s\\])\$(?!\d)|\\\((?P<i2>.+?)\\\)",
    re.S,
)
RENDERED = ("rendered_html", "jp-RenderedMarkdown")  # nbconvert's classic and lab templates
SKIP = {"code", "pre", "script", "style", "math"}


def mathml(tex: str, display: bool) -> str:
    """The MathML of one formula, or the TeX in <code> if latex2mathml cannot read it."""
    try:
        return convert(tex.strip(), display="block" if display else "inline")
    except Exception:  # noqa: BLE001 -- any parse failure: show the source, lose nothing
        return f"<code>{tex}</code>"


def render_text(text: str) -> str | None:
    """`text` with every formula as MathML, or None if it holds none."""
    if not MATH.search(text):
        return None
    out, last = [], 0
    for match in MATH.finditer(text):
        out.append(escape(text[last : match.start()]))
        display = match.group("d1") is not None or match.group("d2") is not None
        tex = next(g for g in match.groupdict().values() if g is not None)
        out.append(mathml(tex, display))
        last = match.end()
    out.append(escape(text[last:]))
    return "".join(out)


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def offline_math(html: str) -> str:
    """The page with its markdown maths as MathML and no MathJax scripts."""
    soup = BeautifulSoup(html, "html.parser")
    for script in soup.find_all("script"):
        if "mathjax" in (script.get("src") or "").lower() or script.get("type") == (
            "text/x-mathjax-config"
        ):
            script.decompose()
    for block in soup.find_all(class_=list(RENDERED)):
        for node in list(block.find_all(string=True)):
            if any(parent.name in SKIP for parent in node.parents):
                continue
            rendered = render_text(str(node))
            if rendered is not None:
                node.replace_with(BeautifulSoup(rendered, "html.parser"))
    return str(soup)


def rewrite(path: Path) -> None:
    """Rewrite one feedback page in place."""
    path.write_text(offline_math(path.read_text(encoding="utf-8")), encoding="utf-8")
