"""Everything a first boot needs, made idempotently: secrets, certificates, data directories,
external networks, and the state that decides what may be made (baked secrets, data state,
the ulimits the engine grants).
"""
