"""Kafka TLS and SASL settings reach every client: Faust's and our own aiokafka clients.

The embedded test broker speaks plaintext only, so these check the options each client is
built with (and that Faust turns its credentials into the same aiokafka options); the
integration tests show plaintext end to end. Run against a secured Kafka by pointing
CHURNGUARD_BROKER and CHURNGUARD_KAFKA_* at it.
"""

from __future__ import annotations

import re
import ssl
from pathlib import Path

import certifi
import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from pydantic import ValidationError

from streams.app import broker_credentials, create_app
from streams.kafka_security import client_options
from streams.settings import Settings
from tests.source_scan import lines_matching

CA = Path(certifi.where())


def test_plaintext_by_default() -> None:
    options = client_options(Settings(broker="kafka://k1:9092;kafka://k2:9092"))
    assert options == {"bootstrap_servers": "k1:9092,k2:9092", "security_protocol": "PLAINTEXT"}
    assert broker_credentials(Settings()) is None


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_over_tls_reaches_aiokafka_and_faust_alike(mechanism: str) -> None:
    settings = Settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism=mechanism,
        kafka_sasl_username="churnguard",
        kafka_sasl_password="s3cret",
        kafka_ca_file=CA,
    )
    ours = client_options(settings)
    assert ours["security_protocol"] == "SASL_SSL"
    assert ours["sasl_mechanism"] == mechanism
    assert (ours["sasl_plain_username"], ours["sasl_plain_password"]) == ("churnguard", "s3cret")
    assert isinstance(ours["ssl_context"], ssl.SSLContext)
    assert ours["ssl_context"].verify_mode == ssl.CERT_REQUIRED

    app = create_app(settings)
    faust_side = credentials_to_aiokafka_auth(app.conf.broker_credentials, app.conf.ssl_context)
    for key in ("security_protocol", "sasl_mechanism", "sasl_plain_username"):
        assert faust_side[key] == ours[key]
    assert faust_side["sasl_plain_password"] == "s3cret"
    assert isinstance(faust_side["ssl_context"], ssl.SSLContext)


def test_sasl_without_tls_and_tls_without_sasl() -> None:
    plain = client_options(
        Settings(
            kafka_security_protocol="SASL_PLAINTEXT",
            kafka_sasl_username="u",
            kafka_sasl_password="p",
        )
    )
    assert "ssl_context" not in plain and plain["sasl_mechanism"] == "PLAIN"
    tls = client_options(Settings(kafka_security_protocol="SSL", kafka_ca_file=CA))
    assert "sasl_mechanism" not in tls and isinstance(tls["ssl_context"], ssl.SSLContext)
    auth = credentials_to_aiokafka_auth(
        broker_credentials(Settings(kafka_security_protocol="SSL", kafka_ca_file=CA))
    )
    assert auth["security_protocol"] == "SSL"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"kafka_security_protocol": "SASL_SSL"}, "CHURNGUARD_KAFKA_SASL_PASSWORD"),
        (
            {"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_username": "u"},
            "CHURNGUARD_KAFKA_SASL_USERNAME",
        ),
        ({"kafka_cert_file": CA}, "kafka_cert_file and kafka_key_file go together"),
        ({"kafka_sasl_mechanism": "GSSAPI"}, "kafka_sasl_mechanism"),
    ],
)
def test_incomplete_security_settings_stop_with_the_reason(
    values: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(**values)  # type: ignore[arg-type]
    assert message in str(caught.value)


def test_every_kafka_client_in_the_packages_takes_the_security_options() -> None:
    """A client built from the bootstrap list alone would ignore TLS and SASL."""
    bare = re.compile(r"bootstrap_servers=(self\.)?settings\.bootstrap_servers")
    assert lines_matching(bare, ("agents", "streams")) == []
