"""The redis.asyncio client of the read model, configured from settings (URL, ACL, TLS)."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from streams.settings import Settings


def redis_url(settings: Settings) -> str:
    """``redis_url`` with the rediss:// scheme when ``redis_tls`` asks for TLS."""
    url = settings.redis_url
    if settings.redis_tls and url.startswith("redis://"):
        return "rediss://" + url.removeprefix("redis://")
    return url


def redis_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``Redis.from_url``: credentials, TLS files and timeouts.

    Credentials and TLS files given in settings win over those in the URL. Retries are the
    caller's business (the sink backs off per batch), so the client itself does not retry.
    """
    options: dict[str, Any] = {
        "socket_timeout": settings.redis_timeout_s,
        "socket_connect_timeout": settings.redis_timeout_s,
        "retry": Retry(NoBackoff(), 0),
    }
    if settings.redis_username is not None:
        options["username"] = settings.redis_username
    if settings.redis_password is not None:
        options["password"] = settings.redis_password.get_secret_value()
    tls_files = {
        "ssl_ca_certs": settings.redis_ca_file,
        "ssl_certfile": settings.redis_cert_file,
        "ssl_keyfile": settings.redis_key_file,
    }
    if redis_url(settings).startswith("rediss://"):
        options.update({name: str(path) for name, path in tls_files.items() if path is not None})
    return options


def make_redis(settings: Settings) -> aioredis.Redis:
    """A redis.asyncio client for the read model (connects lazily, on its first command)."""
    return aioredis.Redis.from_url(redis_url(settings), **redis_options(settings))
