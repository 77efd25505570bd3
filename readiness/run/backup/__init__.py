"""``invoke backup``, ``invoke restore``, ``invoke backups``: the stack's data, kept and given back.

A backup is one directory (``backups/<project>-<UTC time>/`` by default, ``--to`` elsewhere) of
parts and a ``manifest.json`` (``schemas/backup-manifest.schema.json``) written last and
atomically: a directory without one is never offered for restore, whatever it holds. Each
part is one stream that a container of the engine produced (``tar -c`` of a data directory,
``pg_basebackup``, Valkey's RDB), written and hashed in one pass; a restore checks every hash
before it touches anything.

* :mod:`.plan`      which parts a backup takes, from the model (pure);
* :mod:`.manifest`  the manifest: build, read, check (pure but for reading files);
* :mod:`.parts`     the engine side: produce a part, put a part back;
* :mod:`.take`      ``invoke backup``;
* :mod:`.restore`   ``invoke restore`` and ``invoke backups``.
"""
