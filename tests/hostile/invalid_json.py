# expect: 0
# base: wrong
# why: not JSON at all
# %% raw
this is not a notebook {
# %% assert
assert "not a notebook" in results["output"], results
