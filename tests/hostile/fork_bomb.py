# expect: 5
# base: full
# why: thousands of sleeping children after the last test: the process limit stops it, none survives
# %% after end
import os, time
for _ in range(5000):
    try:
        if os.fork() == 0:
            time.sleep(3600)
            os._exit(0)
    except OSError:
        break
