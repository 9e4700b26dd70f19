# expect: 0
# base: wrong
# why: run_cell replaced so later cells never run
# %% before reparameterize
ip = get_ipython()
real = ip.run_cell
ip.run_cell = lambda raw_cell, *a, **k: real("print('passed')", *a, **k)
