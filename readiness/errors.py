"""One error type for every expected failure.

A task that cannot go on raises :class:`ToolkitError`; ``tasks.py`` turns it into a
one-paragraph message and a non-zero exit. Nothing the user can cause should surface as a
traceback.
"""

from __future__ import annotations


class ToolkitError(Exception):
    """An expected failure: what is wrong, where, and the command that fixes it."""

    def __init__(self, message: str, *, where: str | None = None, fix: str | None = None, code: int = 1):
        super().__init__(message)
        self.message = message
        self.where = where
        self.fix = fix
        self.code = code

    def render(self) -> str:
        """The paragraph printed to stderr."""
        parts = [f"error: {self.message}"]
        if self.where:
            parts.append(f"  where: {self.where}")
        if self.fix:
            parts.append(f"  fix:   {self.fix}")
        return "\n".join(parts)

    def __str__(self) -> str:
        return self.render()
