# expect: 5
# base: full
# why: 100 MB printed between the tests
# %% after reparameterize
for _ in range(100):
    print("x" * 1_000_000)
