# expect: 5
# base: full
# why: an 8 GB allocation between the tests fails; nothing else is lost
# %% after reparameterize
try:
    x = torch.ones(2 * 1024**3)
    print("ALLOCATED")
except (RuntimeError, MemoryError) as exc:
    print("REFUSED")
