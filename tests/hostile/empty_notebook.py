# expect: 0
# base: wrong
# why: a notebook with no cells
# %% raw
{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
