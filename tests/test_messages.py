"""What a student reads when a check fails in their own notebook: one short block, the stub
called by its name, the line of their own code; no frames of the check library, no paths."""

import pytest
from IPython.core.interactiveshell import InteractiveShell

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def shell():
    """A real IPython shell, as in the student's kernel: it renders exceptions itself."""
    shell = InteractiveShell.instance()
    shell.run_cell("import torch\nfrom dgmlab.checks import kl_vae as checks")
    yield shell
    InteractiveShell.clear_instance()


def shown(shell, capsys, source: str) -> str:
    capsys.readouterr()
    shell.run_cell(source)
    out = capsys.readouterr()
    return out.out + out.err


def test_a_failed_check_is_one_block_without_the_library(shell, capsys) -> None:
    text = shown(
        shell,
        capsys,
        "def reparameterize(mu, log_var):\n    return mu + torch.exp(log_var) * torch.randn_like(mu)\n"
        "checks.check_reparameterization(reparameterize)",
    )
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines[0].startswith("CheckFailed: check_reparameterization: "), text
    assert len(lines) <= 3, text
    assert "Traceback" not in text and "autograder/" not in text and "site-packages" not in text


def test_an_untouched_stub_says_not_implemented_yet(shell, capsys) -> None:
    text = shown(
        shell,
        capsys,
        "def reparameterize(mu, log_var):\n    # YOUR CODE HERE\n    ...\n"
        "checks.check_reparameterization(reparameterize)",
    )
    assert "not implemented yet" in text and "Traceback" not in text, text


def test_a_stub_inside_a_model_says_not_implemented_yet(shell, capsys) -> None:
    text = shown(
        shell,
        capsys,
        "def reparameterize(mu, log_var):\n    return (..., mu)[1] + ... * log_var\n"
        "checks.check_reparameterization(reparameterize)",
    )
    assert "not implemented yet: the answer still holds the stub `...`" in text, text


def test_an_error_in_the_students_code_names_their_line(shell, capsys) -> None:
    text = shown(
        shell,
        capsys,
        "def reparameterize(mu, log_var):\n    sigma = log_var.exp_half()\n    return mu\n"
        "checks.check_reparameterization(reparameterize)",
    )
    assert "AttributeError: 'Tensor' object has no attribute 'exp_half'" in text, text
    assert "raised in your code: line 2, in reparameterize: sigma = log_var.exp_half()" in text
    assert "/tmp/" not in text and "ipykernel_" not in text, text


def test_a_wrong_value_is_shown_on_its_input_expected_and_got() -> None:
    import torch

    from dgmlab.checks import core

    mu = torch.tensor([[0.5, -1.0], [2.0, 0.25]])
    with pytest.raises(core.CheckFailed) as info:
        core.expect_close(2 * mu, mu, "d KL / d mu should be mu", {"mu": mu})
    assert str(info.value) == "d KL / d mu should be mu: for mu = 2: expected 2, got 4"
    with pytest.raises(core.CheckFailed, match=r"should be mu: got nothing$"):
        core.expect_close(None, mu, "d KL / d mu should be mu")
    with pytest.raises(core.CheckFailed, match=r"expected shape \(2, 2\), got \(4,\)$"):
        core.expect_close(mu.flatten(), mu, "mu should be mu")
    core.expect_close(mu + 1e-7, mu, "passes within float32 rounding")


def test_a_failed_test_ends_with_the_labs_hints_for_what_it_checks() -> None:
    import nbformat

    from autograder import job

    def cell(source, **nbgrader):
        return nbformat.v4.new_code_cell(source, metadata={"nbgrader": nbgrader} if nbgrader else {})

    release = nbformat.v4.new_notebook()
    release.cells = [
        cell("def f():\n    # TODO: return one\n    # YOUR CODE HERE\n    ...", solution=True),
        cell("checks.a(f)", grade=True, solution=False, grade_id="a", points=1),
        cell("x = 1  # TODO: not a hint (not a whole line)"),
        cell("# TODO: square it\n# TODO: then halve it\n...", solution=True),
        cell("# TODO: a comment of the test cell itself", grade=True, grade_id="b", points=1),
    ]
    hints = job.lab_hints(release)
    assert hints == {"a": ["return one"], "b": ["square it", "then halve it"]}
    failed = job.TestResult("b", 0.0, 1.0, "failed: check_b: off")
    assert job.with_hints(failed, hints).message == (
        "failed: check_b: off\nhint: square it\nhint: then halve it"
    )
    passed = job.TestResult("b", 1.0, 1.0, "passed: check_b")
    assert job.with_hints(passed, hints) is passed


def test_a_failed_public_call_says_what_its_check_tested_and_a_hidden_one_does_not() -> None:
    from autograder import job, verdict
    from dgmlab.checks import kl_vae

    public = verdict.Call(kl_vae.check_kl_divergence, {}, 0, 1)
    hidden = verdict.Call(kl_vae.check_kl_divergence, {}, 1, 2)
    assert job._verdict_line(verdict.Verdict(public, False, "KL for mu = 2.0: 4, expected 2")) == (
        "failed: check_kl_divergence: KL for mu = 2.0: 4, expected 2\n"
        "  tested: Exact values of KL(N(mu, sigma^2) || N(0, 1)); sum over dimensions, mean over "
        "the batch."
    )
    assert job._verdict_line(verdict.Verdict(hidden, False, "failed")) == "failed: hidden test 1"


def test_a_failed_self_check_ends_with_what_it_tested(shell, capsys) -> None:
    text = shown(
        shell,
        capsys,
        "def reparameterize(mu, log_var):\n    return mu + torch.exp(log_var) * torch.randn_like(mu)\n"
        "checks.check_reparameterization(reparameterize)",
    )
    assert "tested: z ~ N(mu, exp(log_var)) per element, fresh noise per row" in text, text


def test_a_passed_public_call_shows_what_its_judge_measured_and_a_hidden_one_does_not(
    tmp_path, capsys
) -> None:
    """A trained model's check says its score with the pass; a hidden call's score could tell
    where its bar lies, so its feedback line stays bare."""
    from autograder import job, verdict
    from dgmlab.checks import core, evidence

    @core.collect
    def check_score(value: float, *, inputs: dict) -> dict:
        """The score is at most 1."""
        return {"score": value}

    @check_score.judge
    def _judge(inputs: dict, found: dict) -> str:
        core.expect(found["score"] <= 1, f"score {found['score']}, expected at most 1")
        return f"score {found['score']:.2f}"

    check_score(0.5)
    assert capsys.readouterr().out == "passed: check_score\n  measured: score 0.50\n"
    spec = verdict.TestSpec(
        "t",
        (verdict.Call(check_score, {}, 0, 1), verdict.Call(check_score, {}, 1, 2)),
        judged_in_kernel=False,
    )
    chall = {"calls": [{"inputs": {}}, {"inputs": {}}]}
    for index in (0, 1):
        evidence.save(
            {"check": check_score.name, "evidence": {"score": 0.25}},
            tmp_path / "evidence" / "t" / f"{index}.pt",
        )
    public, hidden = verdict.judge(spec, chall, tmp_path / "evidence", b"secret", "absent")
    assert public.passed and public.measured == "score 0.25"
    assert hidden.passed and hidden.measured == ""
    assert job._verdict_line(public) == "passed: check_score\n  measured: score 0.25"
    assert job._verdict_line(hidden) == "passed: hidden test 1"
