# expect: 0
# base: wrong
# why: a torch.py beside the notebook
# %% file torch.py
raise SystemExit("shadowed")
