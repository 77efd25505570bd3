"""Preflight: read-only checks that say whether the stack can boot, and why not.

:mod:`.facts` gathers what the machine holds, once; each ``check_*`` module holds the checks of
one concern, pure functions of the model and those facts that return :mod:`.findings`;
:mod:`.table` lists every check and runs them. A check imports the facts, never the table.
"""
