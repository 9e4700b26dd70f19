# expect: 3
# base: full
# why: a loop that swallows the interrupt after the first test: the submission limit stops it
# %% after reparameterize
import signal, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
while True:
    time.sleep(0.1)
# %% assert
assert "ran longer than" in results["output"], results
