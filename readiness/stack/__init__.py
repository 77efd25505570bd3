"""The stack as Compose sees it: detection and rendering, the model, the files as written,
the render cache, ``.env``, and the facts derived from the model (database clusters).

Read-only: nothing here changes the machine but the toolkit's own cache.
"""
