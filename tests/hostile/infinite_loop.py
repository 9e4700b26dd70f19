# expect: 3
# base: full
# why: the kl answer loops forever: its cell times out, the reparameterize test counts
# %% answer-kl
while True:
    pass
