"""Bearer-token access to the API (``CHURNGUARD_SERVE_TOKEN``): who may read the read model.

Probes, metrics, the OpenAPI document and the dashboard's static files stay open (they carry
no customer data); every other path needs ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import hmac

from aiohttp import web
from aiohttp.typedefs import Middleware

from agents.api import Handler, error_response

OPEN_PATHS = frozenset({"/", "/healthz", "/readyz", "/metrics", "/openapi.json"})
OPEN_PREFIXES = ("/static/",)


def is_open(path: str) -> bool:
    """True for the paths anyone may read: probes, metrics, the document, static files."""
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


def bearer_auth(token: str) -> Middleware:
    """A middleware answering 401 (JSON, ``WWW-Authenticate: Bearer``) without the token."""
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def require_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        if is_open(request.path):
            return await handler(request)
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            response = error_response(401, "unauthorized", "send Authorization: Bearer <token>")
            response.headers["WWW-Authenticate"] = 'Bearer realm="churnguard"'
            return response
        return await handler(request)

    return require_token
