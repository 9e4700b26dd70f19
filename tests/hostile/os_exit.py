# expect: 3
# base: full
# why: os._exit in the kl answer: the kernel dies, the test before it counts
# %% answer-kl
import os
os._exit(1)
# %% assert
assert "cell" in results["output"] and "exited" in results["output"], results
