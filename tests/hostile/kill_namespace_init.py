# expect: 3
# base: full
# why: the kernel kills the first process of its PID namespace
# %% answer-kl
import os, signal
os.kill(1, signal.SIGKILL)
os.kill(os.getppid(), signal.SIGKILL)
import time
time.sleep(30)
