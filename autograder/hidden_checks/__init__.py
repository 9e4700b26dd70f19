"""Checks only hidden tests call (one module per check module of dgmlab.checks)."""
