# expect: 0
# base: wrong
# why: a fake check library submitted beside the notebook
# %% file autograder/__init__.py

# %% file dgmlab/checks/__init__.py

# %% file dgmlab/checks/kl_vae.py
def __getattr__(name):
    return lambda *a, **k: print("passed")
