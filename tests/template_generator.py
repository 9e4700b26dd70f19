"""Random tagged templates for the property test (tests/test_template_properties.py).

`generate(rng)` writes a whole Jupytext-markdown template of ordinary Python (assignments,
functions, classes with methods, `nn.Sequential(...)`-like calls, literals, keyword calls,
`if`/`for`/`with` blocks, line magics) and markdown, with 1-4 solution regions at random
syntactic places, and returns with it what the test checks the views against: the hint texts,
the lines that stand only inside regions, and the solution view's expected cells.

Every line of a region's body carries a fresh identifier (`v_12`, `x_13`, ...), so a body line
found in the student view is a leak, never a coincidence. The generator renders a student view
of its own (hints and the stub it expects) and checks that both its views parse, so every
template it returns has a solution that parses and a stub that makes each cell parse: a failing
template points at the builder.

Print one template: `python tests/template_generator.py SEED`.
"""

import ast
import random
import sys
from collections import Counter
from dataclasses import dataclass, field

from IPython.core.inputtransformer2 import TransformerManager

HEADER = """\
---
jupyter:
  kernelspec:
    display_name: Python 3 (ipykernel)
    language: python
    name: python3
---
"""  # tests/conftest.py's HEADER (not imported: conftest pulls in torch)

# What each region's placement is called in GeneratedTemplate.kinds. The property test checks
# that every one of them occurs often enough over its templates.
PLACEMENTS = (
    "stmt_top",  # whole statement(s) at top level
    "stmt_in_function",  # statements in the middle of a function body
    "function_body",  # the whole body of a function
    "method_body",  # the whole body of a method
    "block_body",  # the body of an if/for/while/with block in the middle of a function
    "paren_expr",  # an expression alone inside parentheses
    "elem_leading",  # element(s)/argument(s) before others
    "elem_middle",
    "elem_trailing_comma",  # the last element(s), with a trailing comma
    "elem_trailing_bare",  # the last element(s), without one
    "dict_value",  # the value of a dict entry whose key stands on the line before
    "dict_entry_leading",  # whole dict entries
    "dict_entry_middle",
    "dict_entry_trailing",
    "kw_before",  # keyword argument(s) before other keyword arguments
    "kw_after",  # after them
    "kw_among",  # between them
    "span_code",  # from a code cell to a later code cell
    "span_function_tail",  # from the tail of a function's body on into later code cells
    "span_markdown",  # from a markdown cell to a later markdown cell
    "markdown",  # inside a markdown cell
    "markdown_manual",  # the answer of a MANUAL markdown cell
)
# Other features counted in GeneratedTemplate.kinds.
FEATURES = (
    "col0_tags",  # HWBEGIN/HWEND/#!MSG at column 0 in an indented block
    "indented_tags",  # at the body's indentation, in an indented block
    "in_function",  # a bracket placement inside a function or method
    "hint_plain",  # `#!MSG text`
    "hint_commented",  # `# #!MSG text`
    "hint_todo",  # `#!MSG TODO: text` (the TODO is not repeated)
    "hint_among_body",  # a hint between body lines rather than at the top
    "no_hints",
    "span_2",  # a region spanning 2, 3 or 4 cells
    "span_3",
    "span_4",
    "span_markdown_between",  # a markdown cell wholly inside a code span
    "span_code_between",  # a code cell wholly inside a span
    "span_empty_opening",  # HWBEGIN is the last code line of its cell
    "span_closing_removed",  # nothing but blank lines after HWEND in the closing cell
    "two_regions_in_cell",
    "skip_header",  # a region cell with #!TAG SKIPQUESTEXEC
    "magic",  # a cell with an IPython line magic
)

MAGICS = (
    "%matplotlib inline",
    "%load_ext autoreload",
    "%autoreload 2",
    '%config InlineBackend.figure_format = "retina"',
)
WORDS = (
    "compute the loss",
    "reshape the batch",
    "return the result",
    "use the helper",
    "apply the activation",
    "sum over the last axis",
    "keep the shapes",
    "draw the noise",
)
TAB = "    "


@dataclass
class Region:
    """A solution region as written (`lines`, tags included) and what it stands for."""

    kind: str  # one of PLACEMENTS
    lines: list[tuple[str, bool]]  # (text, is a tag line) in template order
    body: list[str]  # the region's ordinary lines
    hints: list[str]  # the hint texts, as the student view should show them
    indent: str  # the stub's and hints' indentation: that of the first body line
    stub: str  # the stub the generator expects to make the cell parse ("" in markdown)


@dataclass
class Cell:
    """A template cell: ordinary lines (str) and regions, in order.

    A cell of a span holds `SpanPart`s instead of regions for its share of the region.
    """

    kind: str  # "code" or "markdown"
    items: list = field(default_factory=list)
    wrap: bool = False  # written between <!-- #region --> markers (adjacent markdown cells)
    manual: bool = False


@dataclass
class SpanPart:
    """One cell's share of a region spanning cells."""

    role: str  # "open", "inside" or "close"
    lines: list[tuple[str, bool]]
    body: list[str]
    region: Region | None = None  # on the opening part: hints, indent and stub


@dataclass
class GeneratedTemplate:
    """A template and the facts the property test checks its views against."""

    text: str  # the whole template, HEADER included
    hints: set[str]  # every hint text, as the student view shows it after `# TODO: `
    region_only: set[str]  # stripped non-blank lines inside regions and nowhere outside
    cells: list[tuple[str, str]]  # (kind, source) of every template cell, as jupytext reads it
    solution: list[str]  # the source of every cell of the solution view
    student: list[tuple[str, str]]  # a student view whose code cells parse (the generator's own)
    kinds: Counter  # placements and features (PLACEMENTS, FEATURES) in this template


def tag_line(line: str) -> bool:
    """A template tag line: `#!TAG ...`, `#!MSG ...` or `# #!MSG ...`, any indentation."""
    s = line.strip()
    return s.startswith(("#!TAG", "#!MSG", "# #!MSG"))


class Generator:
    def __init__(self, rng: random.Random):
        self.rng = rng
        self.n = 0
        self.hint_n = 0
        self.kinds: Counter = Counter()

    # ---- fresh names and ordinary code -------------------------------------------------

    def fresh(self) -> int:
        self.n += 1
        return self.n

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def expr(self) -> str:
        """A one-line expression naming a fresh variable."""
        n = self.fresh()
        return self.rng.choice(
            [
                f"v_{n} * 2 + 1",
                f"torch.relu(v_{n})",
                f"scale(v_{n}, 3)",
                f"v_{n}.mean(dim=0)",
                f"nn.Linear(v_{n}, 10)",
                f"len(v_{n}) - 1",
                f"[i * v_{n} for i in range(3)]",
                f"(v_{n}, 1.5)",
                f'{{"a": v_{n}, "b": 2}}',
                f"v_{n} if v_{n} > 0 else -v_{n}",
                f'"v_{n}"',
                f"np.zeros((v_{n}, 4))",
            ]
        )

    def stmt(self, ind: str) -> str:
        """A one-line statement."""
        n = self.fresh()
        return ind + self.rng.choice(
            [
                f"x_{n} = {self.expr()}",
                f"print(v_{n})",
                f"v_{n} += 1",
                f"assert v_{n} is not None",
                f"out_{n}.append({self.expr()})",
                f"x_{n}, y_{n} = v_{n}, 2",
                f"total_{n} = sum(v_{n}) / len(v_{n})",
            ]
        )

    def block_header(self) -> str:
        n = self.fresh()
        return self.rng.choice(
            [
                f"for i_{n} in range(v_{n}):",
                f"if v_{n} > 0:",
                f"while v_{n} < 10:",
                f"with torch.no_grad():  # v_{n}",
                f"with open(v_{n}) as fh_{n}:",
            ]
        )

    def stmts(self, ind: str, k: int, compound: float = 0.3) -> list[str]:
        """k statements, some of them blocks (every line with a fresh name)."""
        out: list[str] = []
        for _ in range(k):
            if self.chance(compound):
                out.append(ind + self.block_header())
                out += self.stmts(ind + TAB, self.rng.randint(1, 2), compound=0.0)
            else:
                out.append(self.stmt(ind))
        return out

    def text_line(self) -> str:
        n = self.fresh()
        return self.rng.choice(
            [
                f"The answer v_{n} follows from the shapes.",
                f"Step v_{n}: the loss decreases because the code is smaller.",
                f"We see in v_{n} that the variance is **larger**.",
                f"- item v_{n} of the list",
                f"$x_{{{n}}} = \\mu + \\sigma \\epsilon$ (v_{n})",
            ]
        )

    def prose(self) -> str:
        n = self.fresh()
        return self.rng.choice(
            [
                f"Part {n}: we now build the next piece of the model.",
                f"Run the cell below (note {n}).",
                f"The function `f_{n}` takes a batch and returns its codes.",
            ]
        )

    # ---- regions -------------------------------------------------------------------------

    def hints(self, code: bool) -> list[tuple[str, str]]:
        """(written text after the prefix, text the student view shows) of 0-3 hints."""
        k = self.rng.choice([0, 1, 1, 1, 2, 2, 3])
        if k == 0:
            self.kinds["no_hints"] += 1
        out = []
        for _ in range(k):
            self.hint_n += 1
            text = f"hint-{self.hint_n} {self.rng.choice(WORDS)}"
            written = text
            if code and self.chance(0.15):
                written = "TODO: " + text
                self.kinds["hint_todo"] += 1
            out.append((written, text))
        return out

    def region_lines(
        self, body: list[str], tag_indent: str, code: bool, hints: list[tuple[str, str]]
    ) -> list[tuple[str, bool]]:
        """Body lines with the region's hints, at the top or between body lines."""
        lines = [(b, False) for b in body]
        written = []
        for text, _ in hints:
            commented = code and self.chance(0.5)
            self.kinds["hint_commented" if commented else "hint_plain"] += 1
            written.append((f"{tag_indent}{'# ' if commented else ''}#!MSG {text}", True))
        if written and len(body) > 1 and self.chance(0.25):
            self.kinds["hint_among_body"] += 1
            at = sorted(self.rng.randint(0, len(body)) for _ in written)  # hints keep order
            for i, hint in reversed(list(zip(at, written, strict=True))):
                lines.insert(i, hint)
        else:
            lines = written + lines
        return lines

    def tag_indent(self, indent: str) -> str:
        if not indent:
            return ""
        col0 = self.chance(0.4)
        self.kinds["col0_tags" if col0 else "indented_tags"] += 1
        return "" if col0 else indent

    def region(self, kind: str, body: list[str], indent: str, stub: str) -> Region:
        """A code region of `body` lines at `indent`, with tags, hints and the expected stub."""
        self.kinds[kind] += 1
        tag_ind = self.tag_indent(indent)
        hints = self.hints(code=True)
        inner = self.region_lines(body, tag_ind, True, hints)
        lines = [(f"{tag_ind}#!TAG HWBEGIN", True), *inner, (f"{tag_ind}#!TAG HWEND", True)]
        return Region(kind, lines, body, [h for _, h in hints], indent, stub)

    # ---- placements inside one code cell ----------------------------------------------------

    def context(self, make) -> list:
        """Place a snippet at top level, in a function or in a method's body.

        `make(ind, lead)` returns the snippet's items at indentation `ind`; `lead` starts the
        statement (`name = `), so that a function can return the name afterwards.
        """
        where = self.rng.choice(["top", "function", "method"])
        n = self.fresh()
        if where == "top":
            return make("", f"x_{n} = ")
        self.kinds["in_function"] += 1
        if where == "function":
            out = [f"def f_{n}(v_{n}, k=2):"]
            if self.chance(0.5):
                out.append(self.stmt(TAB))
            out += make(TAB, f"y_{n} = ")
            return out + [f"{TAB}return y_{n}"]
        out = [f"class Model_{n}(nn.Module):", f"{TAB}def __init__(self, v_{n}):"]
        out.append(f"{TAB * 2}super().__init__()")
        out += make(TAB * 2, f"self.net_{n} = ")
        if self.chance(0.5):
            out += ["", f"{TAB}def forward(self, x):", f"{TAB * 2}return self.net_{n}(x)"]
        return out

    def p_stmt_top(self) -> list:
        pre = self.stmts("", self.rng.randint(0, 2))
        body = self.stmts("", self.rng.randint(1, 3))
        post = self.stmts("", self.rng.randint(0, 2))
        return pre + [self.region("stmt_top", body, "", "...")] + post

    def def_line(self, ind: str) -> str:
        n = self.fresh()
        return f"{ind}def f_{n}(v_{n}, w_{n}=None):"

    def p_stmt_in_function(self) -> list:
        ind = TAB
        out = [self.def_line("")] + self.stmts(ind, self.rng.randint(1, 2))
        body = self.stmts(ind, self.rng.randint(1, 3))
        n = self.fresh()
        return out + [self.region("stmt_in_function", body, ind, "..."), f"{ind}return v_{n}"]

    def function_body(self, ind: str, kind: str) -> list:
        body = self.stmts(ind + TAB, self.rng.randint(0, 2))
        n = self.fresh()
        body.append(f"{ind}{TAB}return {self.expr()} + v_{n}")
        if len(body) > 2 and self.chance(0.2):
            body.insert(1, "")  # a blank line inside the region
        return [self.def_line(ind), self.region(kind, body, ind + TAB, "...")]

    def p_function_body(self) -> list:
        return self.function_body("", "function_body")

    def p_method_body(self) -> list:
        n = self.fresh()
        out = [f"class Layer_{n}(nn.Module):"]
        if self.chance(0.5):
            out += [f"{TAB}def __init__(self, v_{n}):", f"{TAB * 2}super().__init__()"]
            out += [f"{TAB * 2}self.w_{n} = nn.Parameter(torch.zeros(v_{n}))", ""]
        return out + self.function_body(TAB, "method_body")

    def p_block_body(self) -> list:
        ind = TAB
        out = [self.def_line("")] + self.stmts(ind, self.rng.randint(0, 2))
        out.append(ind + self.block_header())
        body = self.stmts(ind + TAB, self.rng.randint(1, 3))
        out.append(self.region("block_body", body, ind + TAB, "..."))
        n = self.fresh()
        return out + self.stmts(ind, self.rng.randint(0, 1)) + [f"{ind}return v_{n}"]

    def p_paren_expr(self) -> list:
        def make(ind: str, lead: str) -> list:
            inner = ind + TAB
            body = [inner + self.expr()]
            if self.chance(0.4):
                body.append(inner + self.rng.choice(["+ ", "- ", "* "]) + self.expr())
            return [f"{ind}{lead}(", self.region("paren_expr", body, inner, "..."), f"{ind})"]

        return self.context(make)

    def opener(self) -> tuple[str, str]:
        """The opening and closing of a bracket whose elements are written one a line."""
        n = self.fresh()
        return self.rng.choice(
            [
                (f"nn.Sequential(  # v_{n}", ")"),
                ("[", "]"),
                ("(", ")"),
                (f"torch.stack(  # v_{n}", ")"),
                (f"make_grid_{n}(", ")"),
                ("{", "}"),  # a set
            ]
        )

    def p_elements(self, kind: str) -> list:
        position = kind.removeprefix("elem_")

        def make(ind: str, lead: str) -> list:
            inner = ind + TAB
            opening, closing = self.opener()
            before = [inner + self.expr() + "," for _ in range(self.rng.randint(0, 2))]
            after = [inner + self.expr() + "," for _ in range(self.rng.randint(0, 2))]
            if position == "leading":
                before, after = [], after or [inner + self.expr() + ","]
            elif position == "middle":
                before = before or [inner + self.expr() + ","]
                after = after or [inner + self.expr() + ","]
            else:
                before, after = before or [inner + self.expr() + ","], []
            body = [inner + self.expr() + "," for _ in range(self.rng.randint(1, 2))]
            stub = "...,"
            if position.startswith("trailing"):
                stub = "..."
                if position == "trailing_bare":
                    body[-1] = body[-1].removesuffix(",")
            if after and after[-1].endswith(",") and self.chance(0.5):
                after[-1] = after[-1].removesuffix(",")
            region = self.region(kind, body, inner, stub)
            return [f"{ind}{lead}{opening}", *before, region, *after, f"{ind}{closing}"]

        return self.context(make)

    def entry(self, inner: str) -> str:
        n = self.fresh()
        return f'{inner}"k_{n}": {self.expr()},'

    def p_dict_value(self) -> list:
        def make(ind: str, lead: str) -> list:
            inner = ind + TAB
            before = [self.entry(inner) for _ in range(self.rng.randint(0, 2))]
            after = [self.entry(inner) for _ in range(self.rng.randint(0, 2))]
            n = self.fresh()
            key = f'{inner}"k_{n}":'
            value = inner + TAB + self.expr()
            if after or self.chance(0.5):
                value += ","
            stub = "...," if after else "..."
            region = self.region("dict_value", [value], inner + TAB, stub)
            return [f"{ind}{lead}{{", *before, key, region, *after, f"{ind}}}"]

        return self.context(make)

    def p_dict_entry(self, kind: str) -> list:
        position = kind.removeprefix("dict_entry_")

        def make(ind: str, lead: str) -> list:
            inner = ind + TAB
            before = [self.entry(inner) for _ in range(self.rng.randint(1, 2))]
            after = [self.entry(inner) for _ in range(self.rng.randint(1, 2))]
            if position == "leading":
                before = []
            elif position == "trailing":
                after = []
            body = [self.entry(inner) for _ in range(self.rng.randint(1, 2))]
            if not after and self.chance(0.5):
                body[-1] = body[-1].removesuffix(",")
            if after and self.chance(0.5):
                after[-1] = after[-1].removesuffix(",")
            region = self.region(kind, body, inner, "...: ...,")
            return [f"{ind}{lead}{{", *before, region, *after, f"{ind}}}"]

        return self.context(make)

    def kwarg(self, inner: str) -> str:
        n = self.fresh()
        name = self.rng.choice(["size", "dim", "bias", "kernel_size", "padding", "scale"])
        return f"{inner}{name}_{n}={self.expr()},"

    def p_kwargs(self, kind: str) -> list:
        position = kind.removeprefix("kw_")

        def make(ind: str, lead: str) -> list:
            inner = ind + TAB
            n = self.fresh()
            call = self.rng.choice([f"nn.Conv2d(  # v_{n}", f"build_{n}(", f"plt.plot(  # v_{n}"])
            positional = [inner + self.expr() + "," for _ in range(self.rng.randint(0, 2))]
            before = [self.kwarg(inner) for _ in range(self.rng.randint(1, 2))]
            after = [self.kwarg(inner) for _ in range(self.rng.randint(1, 2))]
            if position == "before":
                before, stub = [], "...,"
            elif position == "after":
                after, stub = [], "**...,"
            else:
                stub = "**...,"
            body = [self.kwarg(inner) for _ in range(self.rng.randint(1, 2))]
            if not after and self.chance(0.5):
                body[-1] = body[-1].removesuffix(",")
            if after and self.chance(0.5):
                after[-1] = after[-1].removesuffix(",")
            region = self.region(kind, body, inner, stub)
            return [f"{ind}{lead}{call}", *positional, *before, region, *after, f"{ind})"]

        return self.context(make)

    def placement(self, kind: str) -> list:
        if kind.startswith("elem_"):
            return self.p_elements(kind)
        if kind.startswith("dict_entry_"):
            return self.p_dict_entry(kind)
        if kind.startswith("kw_"):
            return self.p_kwargs(kind)
        return getattr(self, f"p_{kind}")()

    # ---- cells -------------------------------------------------------------------------

    def filler_code(self) -> Cell:
        """A code cell without regions: a function, a class, a literal, a call or statements."""
        items: list = []
        if self.chance(0.25):
            items.append(self.rng.choice(MAGICS))
            self.kinds["magic"] += 1
        choice = self.rng.randrange(5)
        if choice == 0:
            items += [self.def_line("")] + self.stmts(TAB, self.rng.randint(1, 3))
        elif choice == 1:
            n = self.fresh()
            items += [f"class Net_{n}(nn.Module):", f"{TAB}def __init__(self):"]
            items += [f"{TAB * 2}super().__init__()", f"{TAB * 2}self.net = nn.Sequential("]
            items += [f"{TAB * 3}{self.expr()}," for _ in range(self.rng.randint(1, 3))]
            items += [f"{TAB * 2})", "", f"{TAB}def forward(self, x):"]
            items += [f"{TAB * 2}return self.net(x)"]
        elif choice == 2:
            items += [f"d_{self.fresh()} = {{"] + [self.entry(TAB) for _ in range(2)] + ["}"]
        elif choice == 3:
            items += [f"r_{self.fresh()} = run("] + [self.kwarg(TAB) for _ in range(2)] + [")"]
        else:
            items += self.stmts("", self.rng.randint(1, 3))
        if self.chance(0.2):
            items += [self.rng.choice(MAGICS)] + self.stmts("", 1)
            self.kinds["magic"] += 1
        return Cell("code", items)

    def filler_markdown(self) -> Cell:
        return Cell("markdown", [self.prose() for _ in range(self.rng.randint(1, 2))])

    def code_cell(self, kinds: list[str]) -> Cell:
        items: list = []
        if self.chance(0.4):
            items.append("#!TAG SKIPQUESTEXEC")
            self.kinds["skip_header"] += 1
        if self.chance(0.15):
            items.append(self.rng.choice(MAGICS))
            self.kinds["magic"] += 1
        if len(kinds) > 1:
            self.kinds["two_regions_in_cell"] += 1
        for i, kind in enumerate(kinds):
            if i:
                items.append("")
            items += self.placement(kind)
        return Cell("code", items)

    def markdown_cell(self, manual: bool) -> Cell:
        kind = "markdown_manual" if manual else "markdown"
        self.kinds[kind] += 1
        items: list = []
        if manual:
            items.append(f"#!TAG MANUAL q-{self.fresh()} {self.rng.choice(['1', '2', '0.5'])}")
            items.append(f"Why does the model need question {self.fresh()}?")
        else:
            items += [self.prose() for _ in range(self.rng.randint(0, 2))]
        body = [self.text_line() for _ in range(self.rng.randint(1, 3))]
        hints = self.hints(code=False)
        inner = self.region_lines(body, "", False, hints)
        lines = [("#!TAG HWBEGIN", True), *inner, ("#!TAG HWEND", True)]
        stub = "YOUR ANSWER HERE" if manual else ""
        items.append(Region(kind, lines, body, [h for _, h in hints], "", stub))
        if self.chance(0.4):
            items.append(self.prose())
        return Cell("markdown", items, manual=manual)

    def span(self, kind: str) -> list[Cell]:
        """A region from one cell to a later one, 0-2 whole cells between."""
        self.kinds[kind] += 1
        total = self.rng.randint(2, 4)
        self.kinds[f"span_{total}"] += 1
        code = kind != "span_markdown"
        opening = Cell("code" if code else "markdown")
        indent = ""
        if kind == "span_function_tail":
            if self.chance(0.4):
                opening.items.append("#!TAG SKIPQUESTEXEC")
                self.kinds["skip_header"] += 1
            opening.items += self.stmts("", self.rng.randint(0, 1))
            opening.items += [self.def_line("")] + self.stmts(TAB, self.rng.randint(0, 1))
            indent = TAB
            first = self.stmts(TAB, self.rng.randint(1, 2))
        elif code:
            if self.chance(0.4):
                opening.items.append("#!TAG SKIPQUESTEXEC")
                self.kinds["skip_header"] += 1
            if self.chance(0.2):
                opening.items.append(self.rng.choice(MAGICS))
                self.kinds["magic"] += 1
            opening.items += self.stmts("", self.rng.randint(0, 2))
            first = self.stmts("", self.rng.choice([0, 1, 1, 2]))
        else:
            opening.items += [self.prose() for _ in range(self.rng.randint(1, 2))]
            first = [self.text_line() for _ in range(self.rng.randint(0, 2))]
        if not first:
            self.kinds["span_empty_opening"] += 1
        tag_ind = self.tag_indent(indent) if indent else ""
        hints = self.hints(code=code)
        inner = self.region_lines(first, tag_ind, code, hints)
        region = Region(
            kind, [], [], [h for _, h in hints], indent, "..." if code else ""
        )  # the whole span's lines and body are in its parts
        opening.items.append(
            SpanPart("open", [(f"{tag_ind}#!TAG HWBEGIN", True), *inner], first, region)
        )
        cells = [opening]
        for _ in range(total - 2):
            if self.chance(0.5):
                self.kinds["span_markdown_between"] += 1
                body = [self.text_line() for _ in range(self.rng.randint(1, 2))]
                cells.append(
                    Cell("markdown", [SpanPart("inside", [(b, False) for b in body], body)])
                )
            else:
                self.kinds["span_code_between"] += 1
                body = self.stmts("", self.rng.randint(1, 2))
                cells.append(Cell("code", [SpanPart("inside", [(b, False) for b in body], body)]))
        closing = Cell("code" if code else "markdown")
        if code:
            last = self.stmts("", self.rng.choice([0, 1, 1, 2]))
            post = self.stmts("", self.rng.choice([0, 0, 1, 2]))
        else:
            last = [self.text_line() for _ in range(self.rng.randint(0, 2))]
            post = [self.prose() for _ in range(self.rng.choice([0, 0, 1]))]
        closing.items.append(
            SpanPart("close", [*((b, False) for b in last), ("#!TAG HWEND", True)], last)
        )
        if not post:
            self.kinds["span_closing_removed"] += 1
            if code and self.chance(0.3):
                post = [""]  # a blank line after HWEND: the cell still goes
        closing.items += post
        return cells + [closing]

    # ---- the template -------------------------------------------------------------------

    def cells(self) -> list[Cell]:
        n_regions = self.rng.randint(1, 4)
        kinds = [self.rng.choice(PLACEMENTS) for _ in range(n_regions)]
        cells: list[Cell] = []  # every cell costs the build time: few without regions
        if self.chance(0.3):
            cells.append(Cell("markdown", [f"# Generated lab {self.fresh()}"]))
        if self.chance(0.3):
            cells.append(
                Cell(
                    "code",
                    ["#!TAG LOCKED", "import numpy as np", "import torch", "from torch import nn"],
                )
            )
        i = 0
        while i < len(kinds):
            for _ in range(self.rng.choice([0, 0, 1])):
                cells.append(self.filler_code() if self.chance(0.5) else self.filler_markdown())
            kind = kinds[i]
            if kind.startswith("span_"):
                cells += self.span(kind)
            elif kind.startswith("markdown"):
                cells.append(self.markdown_cell(manual=kind == "markdown_manual"))
            else:
                group = [kind]
                nxt = kinds[i + 1] if i + 1 < len(kinds) else ""
                if nxt and not nxt.startswith(("span_", "markdown")) and self.chance(0.3):
                    group.append(nxt)
                    i += 1
                cells.append(self.code_cell(group))
            i += 1
        if self.chance(0.5):
            cells.append(self.filler_code() if self.chance(0.5) else self.filler_markdown())
        for a, b in zip(cells, cells[1:], strict=False):
            if a.kind == b.kind == "markdown":
                a.wrap = b.wrap = True
        return cells


def template_lines(cell: Cell) -> list[tuple[str, bool]]:
    out: list[tuple[str, bool]] = []
    for item in cell.items:
        if isinstance(item, str):
            out.append((item, tag_line(item)))
        else:
            out += item.lines
    return out


def student_lines(cell: Cell) -> list[str] | None:
    """The cell in the generator's own student view (None: the cell is removed)."""
    out: list[str] = []
    closing = False
    for item in cell.items:
        if isinstance(item, str):
            if not tag_line(item):
                out.append(item)
            continue
        region = item.region if isinstance(item, SpanPart) else item
        if isinstance(item, SpanPart) and item.role == "inside":
            return None
        if isinstance(item, SpanPart) and item.role == "close":
            closing = True
            continue
        if cell.kind == "code":
            out += [f"{region.indent}# TODO: {h}" for h in region.hints]
            out += [f"{region.indent}# YOUR CODE HERE", f"{region.indent}{region.stub}"]
        else:
            out += region.hints + ([region.stub] if region.stub else [])
    if closing and not any(line.strip() for line in out):
        return None
    return out


TRANSFORMER = TransformerManager()


def parses(source: str) -> bool:
    """Whether a code cell parses, its IPython magics read as IPython does."""
    if any(line.lstrip().startswith(("%", "!")) for line in source.split("\n")):
        source = TRANSFORMER.transform_cell(source)
    try:
        ast.parse(source)
    except SyntaxError:
        return False
    return True


def render(cells: list[Cell]) -> str:
    parts = []
    for cell in cells:
        source = "\n".join(text for text, _ in template_lines(cell))
        if cell.kind == "code":
            parts.append(f"```python\n{source}\n```\n")
        elif cell.wrap:
            parts.append(f"<!-- #region -->\n{source}\n<!-- #endregion -->\n")
        else:
            parts.append(source + "\n")
    return HEADER + "\n" + "\n".join(parts)


def generate(rng: random.Random) -> GeneratedTemplate:
    """A random template whose solution parses, and the facts its views must satisfy."""
    gen = Generator(rng)
    cells = gen.cells()
    outside: set[str] = set()
    inside: set[str] = set()
    hints: set[str] = set()
    for cell in cells:
        for item in cell.items:
            if isinstance(item, str):
                if not tag_line(item):
                    outside.add(item.strip())
            else:
                inside |= {b.strip() for b in item.body}
                region = item.region if isinstance(item, SpanPart) else item
                if region is not None:
                    hints |= set(region.hints)
    sources = [(c.kind, "\n".join(t for t, _ in template_lines(c))) for c in cells]
    solution = ["\n".join(t for t, tag in template_lines(c) if not tag) for c in cells]
    student = [(c.kind, "\n".join(s)) for c in cells if (s := student_lines(c)) is not None]
    for kind, source in [*zip([c.kind for c in cells], solution, strict=True), *student]:
        if kind == "code" and not parses(source):
            raise AssertionError(f"the generator wrote a cell that does not parse:\n{source}")
    return GeneratedTemplate(
        text=render(cells),
        hints=hints,
        region_only={t for t in inside - outside if t},
        cells=sources,
        solution=solution,
        student=student,
        kinds=gen.kinds,
    )


if __name__ == "__main__":
    print(generate(random.Random(int(sys.argv[1]) if len(sys.argv) > 1 else 0)).text)
