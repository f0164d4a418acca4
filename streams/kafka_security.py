"""How Kafka clients connect: TLS and SASL options from the settings, for aiokafka.

One place maps ``CHURNGUARD_KAFKA_*`` to client options, so that the worker's own reader,
the read-model sink and every tool connect alike (Faust's own clients get the same through
:func:`streams.app.broker_credentials`).
"""

from __future__ import annotations

import ssl
from typing import Any

from aiokafka.helpers import create_ssl_context

from streams.settings import Settings


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context of SSL and SASL_SSL (CA, client certificate), else None."""
    if not settings.kafka_security_protocol.endswith("SSL"):
        return None
    return create_ssl_context(
        cafile=str(settings.kafka_ca_file) if settings.kafka_ca_file else None,
        certfile=str(settings.kafka_cert_file) if settings.kafka_cert_file else None,
        keyfile=str(settings.kafka_key_file) if settings.kafka_key_file else None,
    )


def client_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for every aiokafka client: bootstrap servers, TLS and SASL."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "security_protocol": settings.kafka_security_protocol,
    }
    context = ssl_context(settings)
    if context is not None:
        options["ssl_context"] = context
    if settings.kafka_security_protocol.startswith("SASL_"):
        password = settings.kafka_sasl_password
        options.update(
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_plain_username=settings.kafka_sasl_username,
            sasl_plain_password=password.get_secret_value() if password else None,
        )
    return options
