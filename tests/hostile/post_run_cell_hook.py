# expect: 0
# base: wrong
# why: a post_run_cell hook that clears every error
# %% before reparameterize
def clear(result):
    result.error_in_exec = None
    result.error_before_exec = None
get_ipython().events.register("post_run_cell", clear)
