"""A real Prometheus scrapes a real worker: what it reads back is what the worker processed.

Also the worker's probes: ``/healthz`` answers while the process runs, ``/readyz`` says ready
once partitions are assigned and recovered (and says why not before).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from streams.broker import free_port, stop_process
from tests.conftest import Outputs, Producer, Worker

pytestmark = pytest.mark.integration

Pipeline = tuple[Worker, Producer, Outputs]
RULES = Path(__file__).resolve().parent.parent / "deploy" / "prometheus" / "rules"
LOGINS = 5


def prometheus_binary() -> str | None:
    """Debian's Prometheus server (package `prometheus`; .ci/run installs it)."""
    return shutil.which("prometheus") or (
        "/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None
    )


@dataclass
class Prometheus:
    """A Prometheus server on loopback with its own config and storage."""

    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    async def query(self, promql: str) -> list[dict[str, Any]]:
        """The result vector of an instant query."""
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{self.url}/api/v1/query", params={"query": promql}) as resp,
        ):
            body = await resp.json()
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    async def wait_value(self, promql: str, expected: float, timeout: float = 90.0) -> float:
        """Poll ``promql`` until its single value equals ``expected``; the last value seen."""
        deadline = time.monotonic() + timeout
        last: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"prometheus exited:\n{self.log_path.read_text()[-3000:]}")
            last = await self.query(promql)
            if len(last) == 1 and float(last[0]["value"][1]) == expected:
                return expected
            await asyncio.sleep(1.0)
        raise AssertionError(f"{promql} never became {expected}; last result: {last}")


def _ev(event_id: str, customer_id: str, at: datetime) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "customer_id": customer_id,
        "occurred_at": at.isoformat(),
        "user_id": "u1",
        "channel": "web",
    }


async def _get(url: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, dict(await resp.json())


@pytest.fixture(scope="module")
def prometheus(
    pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Prometheus]:
    binary = prometheus_binary()
    if binary is None:
        pytest.skip("no prometheus binary: install Debian's `prometheus` package (.ci/run does)")
    worker = pipeline[0]
    base = tmp_path_factory.mktemp("prometheus")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES / "churnguard.yml")],
        "scrape_configs": [
            {
                "job_name": "churnguard",
                "static_configs": [{"targets": [f"127.0.0.1:{worker.web_port}"]}],
            }
        ],
    }
    (base / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log_path = base / "prometheus.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={base / 'prometheus.yml'}",
                f"--storage.tsdb.path={base / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield Prometheus(f"http://127.0.0.1:{port}", proc, log_path)
    finally:
        stop_process(proc, 20.0)


async def test_healthz_answers_and_readyz_says_ready_once_partitions_are_recovered(
    pipeline: Pipeline,
) -> None:
    worker = pipeline[0]
    base = f"http://127.0.0.1:{worker.web_port}"
    deadline = time.monotonic() + 90
    seen: list[tuple[int, dict[str, Any]]] = []
    while time.monotonic() < deadline:
        try:
            status, body = await _get(f"{base}/readyz")
        except aiohttp.ClientError:  # the web server is not up yet
            await asyncio.sleep(0.3)
            continue
        seen.append((status, body))
        if status == 200:
            break
        await asyncio.sleep(0.3)
    assert seen, f"/readyz never answered:\n{worker.log()[-3000:]}"
    for status, body in seen[:-1]:  # not ready yet: 503, with a reason
        assert status == 503 and body["ready"] is False and body["reason"], body
    assert seen[-1] == (200, {"ready": True, "partitions": [0, 1]}), seen[-1]
    assert await _get(f"{base}/healthz") == (200, {"status": "ok"})


async def test_prometheus_reads_back_what_the_worker_processed(
    pipeline: Pipeline, prometheus: Prometheus, unique: str
) -> None:
    worker, producer, outputs = pipeline
    logins = worker.topics.name("logins")
    # the last login 20 days ago: inactivity (14 days) fires on the first sweep
    old = datetime.now(UTC) - timedelta(days=20)
    customers = [f"scraped-{unique}-{i}" for i in range(LOGINS)]
    for i, cid in enumerate(customers):
        await producer.send(logins, _ev(f"{cid}-login", cid, old + timedelta(minutes=i)), cid)
    await outputs.wait_for(
        lambda t, v: t.endswith("alerts") and v["customer_id"] in customers, count=LOGINS
    )

    # through Prometheus' HTTP API, from its own scrapes of the worker's /metrics
    applied = f'sum(churnguard_events_total{{topic="{logins}",outcome="applied"}})'
    assert await prometheus.wait_value(applied, LOGINS) == LOGINS
    assert await prometheus.wait_value("churnguard_ready", 1) == 1
    assert await prometheus.wait_value("churnguard_partitions_assigned", 2) == 2
    firing = 'sum(churnguard_alerts_firing{rule="inactivity"})'
    assert await prometheus.wait_value(firing, LOGINS) == LOGINS
    # fired_at is the 14th day after each login: about 6 days before it was emitted
    latency = 'sum(churnguard_alert_latency_seconds_bucket{status="firing",le="86400.0"})'
    assert await prometheus.wait_value(latency, 0) == 0
    count = 'sum(churnguard_alert_latency_seconds_count{status="firing"})'
    assert await prometheus.wait_value(count, LOGINS) == LOGINS
    lag = f'sum(churnguard_consumer_lag_records{{topic="{logins}"}})'
    assert await prometheus.wait_value(lag, 0) == 0
    sweeps = await prometheus.query("sum(churnguard_sweep_seconds_count)")
    assert sweeps and float(sweeps[0]["value"][1]) > 0
    table = await prometheus.query("sum(churnguard_table_customers)")
    assert table and float(table[0]["value"][1]) >= LOGINS  # RocksDB's estimate
    targets = await prometheus.query('up{job="churnguard"}')
    assert [t["value"][1] for t in targets] == ["1"]
