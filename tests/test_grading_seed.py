"""While grading, every cell is seeded from its source: the same cell draws the same numbers."""

import nbformat
from nbclient import NotebookClient

CELLS = [
    "import torch\nimport dgmlab.checks",
    "print(torch.rand(3).tolist())",
    "x = torch.rand(5)",  # a cell in between must not shift the next cell's draws
    "print(torch.rand(3).tolist())",
]


def run(env: dict) -> list[str]:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    client = NotebookClient(nb, kernel_name="python3")
    client.km = client.create_kernel_manager()
    client.start_new_kernel(env={**__import__("os").environ, **env})
    client.start_new_kernel_client()
    try:
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)
    finally:
        client._cleanup_kernel()
    return [nb.cells[i].outputs[0]["text"] for i in (1, 3)]


def test_cells_are_seeded_from_their_source_when_grading() -> None:
    first, second = run({"AUTOGRADER_GRADING": "1"})
    assert first == second


def test_students_keep_fresh_randomness() -> None:
    first, second = run({"AUTOGRADER_GRADING": "0"})
    assert first != second
