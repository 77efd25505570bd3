"""The machine the toolkit runs on: subprocesses, atomic files, the Docker engine, host facts.

Nothing here knows the stack: these modules import only :mod:`readiness.errors`,
:mod:`readiness.output` and each other.
"""
