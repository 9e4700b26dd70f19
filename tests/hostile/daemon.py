# expect: 5
# base: full
# why: a double-forked daemon that would outlive the kernel
# %% after kl
import os, subprocess, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(3600)
    os._exit(0)
subprocess.Popen(["sleep", "3600"], start_new_session=True)
