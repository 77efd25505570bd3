"""The documents, rendered from the code and checked against it: ``python -m tools.docs [--check]``.

Each table that lists what the code holds is a generated block between two marker comments
(:mod:`.blocks`), rendered by the module of its kind: :mod:`.tasks` (Invoke's task list),
:mod:`.sessions` (the noxfile), :mod:`.troubleshooting` (the catalogue of finding ids),
:mod:`.secrets` (the secrets registry) and :mod:`.ci` (``.ci/run``). What is not generated is
checked: :mod:`.links`, :mod:`.commands`, :mod:`.envexample`, :mod:`.traceability`, and the
rotation section (:func:`.secrets.rotation_problems`). :mod:`.render` ties them together and
:mod:`.markdown` reads Markdown with markdown-it-py. ``nox -s lint`` runs ``--check``.
"""
