"""Preflight: read-only checks that say whether the stack can boot, and why not.

Facts are gathered once; every check is a pure function of the model and those facts that
returns findings.
"""
