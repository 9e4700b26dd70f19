"""The check library that graded test cells call.

Each lab has a module here (``dgmlab.checks.autoencoders`` ...). A check takes the student's
object, raises :class:`CheckFailed` with a message saying what was expected, and prints one
``passed: NAME`` line to stdout on success (nbgrader zeroes a test cell that writes to stderr).
"""

from dgmlab.checks.core import CheckFailed, check, device_of, expect
from dgmlab.checks.grading import install_seed_hook

__all__ = ["CheckFailed", "check", "device_of", "expect"]

install_seed_hook()
