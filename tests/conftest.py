"""Shared fixtures: the repository's paths and a helper to write templates."""

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
collect_ignore = ["hostile"]  # submissions for tests/test_hostile.py, not test modules
HEADER = """\
---
jupyter:
  kernelspec:
    display_name: Python 3 (ipykernel)
    language: python
    name: python3
---
"""


def all_templates() -> list[Path]:
    """Every template the properties are checked on: the labs, the test templates and the
    compatibility corpus (templates in the style of the seed course)."""
    return [
        *sorted((ROOT / "labs").glob("*.md")),
        *sorted((ROOT / "tests" / "templates").glob("*.md")),
        *sorted(p for p in (ROOT / "tests" / "compat").glob("*.md") if p.name != "README.md"),
    ]


@pytest.fixture
def write_template(tmp_path: Path):
    """Write a template body (after a fixed 7-line header) to tmp_path/NAME.md."""

    def write(body: str, name: str = "lab") -> Path:
        path = tmp_path / f"{name}.md"
        path.write_text(HEADER + body)
        return path

    return write


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module of small-tensor tests: they gain nothing from a second,
    and on a shared 2-core machine extra threads spin against other jobs (modules opt in with
    `pytestmark = pytest.mark.usefixtures("one_thread")`)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pytest_configure(config) -> None:
    """Under pytest-xdist (`make test`), the test processes share the cores: each gets its
    part of them for torch, so that two processes of two threads do not spin on two cores."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


@pytest.fixture(autouse=True)
def torch_threads_restored():
    """Each test leaves torch's thread count as it found it. Grading in this process (the
    Gradescope entry point runs worker.run here) sets it to the grader's one thread per kernel,
    and every later test then ran on one of the machine's two cores: the 300-secret power tests
    at half speed."""
    threads = torch.get_num_threads()
    yield
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
