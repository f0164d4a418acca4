"""The read model's Redis over mutual TLS with a password, from CHURNGUARD_REDIS_* settings.

A real redis-server (Debian's is built with TLS) listens only on a TLS port, requires client
certificates signed by the test CA and a password. churnguard's client connects with the
right CA, certificate and password, and with nothing less; `churnguard serve` gets there
from the environment alone.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
import redis.exceptions
import requests

from agents.redis_client import make_redis
from streams.broker import free_port, stop_process
from streams.settings import Settings
from tests.serve_support import ServeProcess

pytestmark = pytest.mark.integration

PASSWORD = "read-model-password"


@dataclass(frozen=True)
class Pki:
    """A CA, a server certificate for 127.0.0.1, a client certificate, and strangers."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path
    other_cert: Path
    other_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _ca(name: str, cwd: Path) -> None:
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
        "-keyout", f"{name}.key", "-out", f"{name}.crt", cwd=cwd,
    )  # fmt: skip


def _signed(name: str, ca: str, cwd: Path, san: str | None = None) -> None:
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=cwd,
    )  # fmt: skip
    extra: list[str] = []
    if san is not None:
        (cwd / f"{name}.ext").write_text(f"subjectAltName={san}\n")
        extra = ["-extfile", f"{name}.ext"]
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
        "-CAcreateserial", "-days", "2", "-out", f"{name}.crt", *extra, cwd=cwd,
    )  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make the test certificates")
    d = tmp_path_factory.mktemp("pki")
    _ca("ca", d)
    _ca("other-ca", d)
    _signed("server", "ca", d, san="IP:127.0.0.1,DNS:localhost")
    _signed("client", "ca", d)
    _signed("other", "other-ca", d)
    return Pki(
        d / "ca.crt",
        d / "server.crt",
        d / "server.key",
        d / "client.crt",
        d / "client.key",
        d / "other-ca.crt",
        d / "other.crt",
        d / "other.key",
    )


@pytest.fixture(scope="module")
def tls_port(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A redis-server listening only on a TLS port, client certificates and password required."""
    workdir = tmp_path_factory.mktemp("redis-tls")
    port = free_port()
    proc = subprocess.Popen(
        [
            "redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
            "--tls-cert-file", str(pki.server_cert), "--tls-key-file", str(pki.server_key),
            "--tls-ca-cert-file", str(pki.ca), "--tls-auth-clients", "yes",
            "--requirepass", PASSWORD, "--save", "", "--appendonly", "no", "--dir", str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        yield port
    finally:
        stop_process(proc, 10)


def _settings(port: int, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "redis_url": f"redis://127.0.0.1:{port}/0",
        "redis_tls": True,
        "redis_timeout_s": 3.0,
        **overrides,
    }
    return Settings(**values)


async def _ping(settings: Settings) -> bool:
    client: aioredis.Redis = make_redis(settings)
    try:
        for _ in range(30):  # the server may still be starting
            try:
                return bool(await client.ping())
            except redis.exceptions.ConnectionError as exc:
                if "refused" not in str(exc).lower():
                    raise
                await asyncio.sleep(0.2)
        raise AssertionError("redis-server never listened")
    finally:
        await client.aclose()


async def test_the_right_ca_certificate_and_password_connect(pki: Pki, tls_port: int) -> None:
    settings = _settings(
        tls_port,
        redis_ca_file=pki.ca,
        redis_cert_file=pki.client_cert,
        redis_key_file=pki.client_key,
        redis_password=PASSWORD,
    )
    assert await _ping(settings)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("no password", redis.exceptions.AuthenticationError),
        ("wrong password", redis.exceptions.AuthenticationError),
        ("no client certificate", redis.exceptions.ConnectionError),
        ("a certificate of another CA", redis.exceptions.ConnectionError),
        ("a server this CA did not sign", redis.exceptions.ConnectionError),
        ("no TLS", redis.exceptions.ConnectionError),
    ],
)
async def test_anything_less_is_refused(
    pki: Pki, tls_port: int, case: str, expected: type[Exception]
) -> None:
    good: dict[str, Any] = {
        "redis_ca_file": pki.ca,
        "redis_cert_file": pki.client_cert,
        "redis_key_file": pki.client_key,
        "redis_password": PASSWORD,
    }
    changes: dict[str, dict[str, Any]] = {
        "no password": {"redis_password": None},
        "wrong password": {"redis_password": "guess"},
        "no client certificate": {"redis_cert_file": None, "redis_key_file": None},
        "a certificate of another CA": {
            "redis_cert_file": pki.other_cert,
            "redis_key_file": pki.other_key,
        },
        "a server this CA did not sign": {"redis_ca_file": pki.other_ca},
        "no TLS": {"redis_tls": False},
    }
    await _ping(_settings(tls_port, **good))  # the server is up
    with pytest.raises(expected):
        await _ping(_settings(tls_port, **{**good, **changes[case]}))


def test_serve_reaches_the_tls_redis_from_the_environment(
    pki: Pki, tls_port: int, tmp_path: Path
) -> None:
    env = {
        "CHURNGUARD_REDIS_URL": f"redis://127.0.0.1:{tls_port}/0",
        "CHURNGUARD_REDIS_TLS": "true",
        "CHURNGUARD_REDIS_CA_FILE": str(pki.ca),
        "CHURNGUARD_REDIS_CERT_FILE": str(pki.client_cert),
        "CHURNGUARD_REDIS_KEY_FILE": str(pki.client_key),
        "CHURNGUARD_REDIS_PASSWORD": PASSWORD,
    }
    serve = ServeProcess(env, tmp_path / "serve.log").start()
    try:
        deadline = time.monotonic() + 30
        while (ready := requests.get(f"{serve.url}/readyz", timeout=10)).status_code != 200:
            assert time.monotonic() < deadline, ready.text
            time.sleep(0.2)
        assert requests.get(f"{serve.url}/at-risk", timeout=10).json()["items"] == []
    finally:
        serve.stop()
    assert PASSWORD not in serve.log()
