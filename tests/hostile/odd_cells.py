# expect: 0
# base: wrong
# why: cells of unknown types, sources that are numbers, metadata that is a list
# %% raw
{"cells": [{"cell_type": "alien", "source": 42, "metadata": []}, {"cell_type": "code", "source": ["def kl(mu, lv):\n", "    return mu"], "metadata": {"nbgrader": "x"}, "outputs": [], "execution_count": null}, {"nope": 1}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
