"""Contract fake of Keycloak 26 for the e2e suite (see base.py for what a contract fake is).

Follows Keycloak's "Securing applications and services guide", OpenID Connect endpoints
(https://www.keycloak.org/securing-apps/oidc-layers): the realm document ``/realms/{realm}``
(what ``invoke health`` asks), the discovery document
``/realms/{realm}/.well-known/openid-configuration``, the token endpoint with the password
grant (the bootstrap admin of ``KC_BOOTSTRAP_ADMIN_USERNAME`` and the password the stack's
wrapper exports from ``/run/secrets/keycloak_admin_password``, client ``admin-cli``) and the
logout endpoint; and ``/health/ready`` of the management interface. Issuer URLs start with
``KC_HOSTNAME``, as Keycloak's do. Only realm ``master`` exists.
"""

from __future__ import annotations

import os
import secrets
import threading

from base import Response, equal, secret_file

REALM = "master"
ADMIN_PASSWORD = "/run/secrets/keycloak_admin_password"
SESSIONS: dict[str, str] = {}  # refresh token -> user
LOCK = threading.Lock()


def issuer() -> str:
    return os.environ.get("KC_HOSTNAME", "https://keycloak.localhost").rstrip("/") + f"/realms/{REALM}"


def handle(req):
    base = f"/realms/{REALM}"
    if req.path == "/health/ready":
        return Response(200, {"status": "UP"})
    if req.path == base and req.method in ("GET", "HEAD"):
        return Response(200, {"realm": REALM, "token-service": issuer() + "/protocol/openid-connect"})
    if req.path == base + "/.well-known/openid-configuration":
        oidc = issuer() + "/protocol/openid-connect"
        return Response(200, {"issuer": issuer(), "token_endpoint": oidc + "/token",
                              "end_session_endpoint": oidc + "/logout", "authorization_endpoint": oidc + "/auth",
                              "grant_types_supported": ["authorization_code", "password", "refresh_token"]})
    if req.path == base + "/protocol/openid-connect/token" and req.method == "POST":
        form = req.form()
        if form.get("client_id") != "admin-cli":
            return Response(401, {"error": "invalid_client", "error_description": "Invalid client credentials"})
        if form.get("grant_type") != "password":
            return Response(400, {"error": "unsupported_grant_type"})
        user = os.environ.get("KC_BOOTSTRAP_ADMIN_USERNAME", "admin")
        if form.get("username") != user or not equal(form.get("password", ""), secret_file(ADMIN_PASSWORD)):
            return Response(401, {"error": "invalid_grant", "error_description": "Invalid user credentials"})
        refresh = secrets.token_urlsafe(24)
        with LOCK:
            SESSIONS[refresh] = user
        return Response(200, {"access_token": secrets.token_urlsafe(32), "expires_in": 60, "refresh_expires_in": 1800,
                              "refresh_token": refresh, "token_type": "Bearer", "scope": "profile email"})
    if req.path == base + "/protocol/openid-connect/logout" and req.method == "POST":
        with LOCK:
            found = SESSIONS.pop(req.form().get("refresh_token", ""), None)
        return Response(204) if found else Response(400, {"error": "invalid_grant"})
    return None
