# expect: 3
# base: full
# why: the kernel kills itself with SIGKILL
# %% answer-kl
import os, signal
os.kill(os.getpid(), signal.SIGKILL)
