# expect: 0
# base: wrong
# why: a second notebook in the folder whose cells claim full marks
# %% file extra.ipynb
{"cells": [{"cell_type": "code", "execution_count": 1, "metadata": {"nbgrader": {"grade": true, "grade_id": "kl", "points": 1000}}, "outputs": [], "source": "print('passed')"}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
# %% assert
assert "extra.ipynb" in results["output"], results
