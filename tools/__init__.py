"""Tools that work on the repository, outside the toolkit's runtime (not installed with it)."""
