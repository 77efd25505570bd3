"""Running the stack and proving it: what a user does once everything is prepared.

``invoke up`` pulls what the engine lacks (:mod:`.pull`), then starts and waits (:mod:`.start`);
:mod:`.health` checks containers and endpoints, :mod:`.verify` proves that each service does
its job through the interface its users use, :mod:`.urls` says where everything lives. Every
HTTPS request from the host goes through one pinned client (:mod:`.httpclient`).
"""
