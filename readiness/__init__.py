"""Readiness toolkit: prepares, checks and proves the core Compose stack.

Everything it knows about the stack comes from ``docker compose config``; see
``docs/x-readiness.md`` for the few facts that live in ``x-readiness`` extension fields.
The package is cut in layers -- ``system``, ``stack``, ``prepare``, then ``preflight`` and
``run`` -- each importing only those below it (ARCHITECTURE.md, "The toolkit's layers").
"""

__version__ = "0.1.0"
