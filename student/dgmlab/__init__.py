"""What a lab notebook imports: the public checks a student runs offline, and MNIST provisioning.

This is the student package (`pip install dgm-labs-student`). It holds no hidden check, hidden
threshold, reference solution or instructor tooling: those are the instructor package's
(`autograder`), which depends on this one.
"""
