# expect: 5
# base: full
# why: a 1 GB file and a disk-filling loop between the tests
# %% after reparameterize
try:
    with open("big", "wb") as f:
        for _ in range(1024):
            f.write(b"0" * 2**20)
    print("WROTE 1 GB")
except OSError as exc:
    print("REFUSED", exc)
