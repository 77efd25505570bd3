"""Running the stack and proving it: what a user does once everything is prepared.

``verify`` proves that each service does its job through the interface its users use; the
HTTP client here (:mod:`.httpclient`) is the one every probe from the host goes through.
"""
