"""What the grader knows and a graded kernel must not: hidden thresholds, one module per lab.

Never copied into the sandbox (sandbox.KERNEL_PACKAGES) and never part of what students
install. A hidden test names its bar by a literal (`bar="hidden"`); the judge looks it up here.
"""
