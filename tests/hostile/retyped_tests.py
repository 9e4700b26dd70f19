# expect: 0
# base: wrong
# why: test cells retyped to markdown
# %% notebook
for i, cell in enumerate(nb.cells):
    if cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("grade"):
        nb.cells[i] = nbformat.v4.new_markdown_cell(cell.source, metadata=cell.metadata)
