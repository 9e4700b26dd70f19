# expect: 0
# base: wrong
# why: the notebook of a different lab submitted
# %% raw
{"cells": [{"cell_type": "code", "execution_count": null, "metadata": {"nbgrader": {"grade": true, "grade_id": "decoder-shape", "points": 1.5, "locked": true, "solution": false}}, "outputs": [], "source": "print('ok')"}], "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"}}, "nbformat": 4, "nbformat_minor": 5}
