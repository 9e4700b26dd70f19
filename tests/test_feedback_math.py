"""Feedback pages render their maths without a network: MathML in the page, no MathJax."""

from autograder.feedback_math import offline_math

PAGE = """<html><head>
<script src="https://cdnjs.cloudflare.com/ajax/libs/mathjax/2.7.7/latest.js?config=TeX"> </script>
<script type="text/x-mathjax-config">MathJax.Hub.Config({});</script>
<script>var keep = 1;</script>
</head><body>
<div class="text_cell_render rendered_html"><p>KL of $q(z) = \\mathcal{N}(\\mu, \\sigma^2)$:</p>
$$\\mathrm{KL} = \\frac{1}{2}(\\mu^2 + \\sigma^2 - 1) - \\log \\sigma$$
<p>It costs $5 and $6 here; <code>x = $y$</code> stays code; \\(a < b\\) too.</p></div>
<div class="output_area"><pre>printed $not maths$</pre></div>
</body></html>"""


def test_formulas_become_mathml_and_mathjax_goes() -> None:
    out = offline_math(PAGE)
    assert "cdnjs" not in out and "x-mathjax-config" not in out
    assert "var keep = 1;" in out  # other scripts stay
    assert out.count('<math display="inline"') == 2 and out.count('<math display="block"') == 1
    assert "<mfrac>" in out and "𝒩" in out
    assert "$q(z)" not in out and "\\frac" not in out


def test_what_is_not_maths_is_left_alone() -> None:
    out = offline_math(PAGE)
    assert "It costs $5 and $6 here" in out
    assert "<code>x = $y$</code>" in out
    assert "<pre>printed $not maths$</pre>" in out  # outputs are not markdown


def test_a_formula_it_cannot_read_is_kept_as_tex() -> None:
    out = offline_math('<div class="rendered_html"><p>see $\\frac{1}{$ here</p></div>')
    assert out == '<div class="rendered_html"><p>see <code>\\frac{1}{</code> here</p></div>'


def test_a_hostile_page_costs_linear_time_and_a_bounded_number_of_formulas() -> None:
    import time

    from autograder.feedback_math import MOST, render_text

    for text in ("$" * 200_000, "\\(" * 100_000, "a $x" * 50_000):
        start = time.perf_counter()
        assert render_text(text) is None
        assert time.perf_counter() - start < 3, text[:10]
    many = render_text("$x$ " * (MOST + 100))
    assert many.count("<math") == MOST and many.endswith("$x$ " * 100)
