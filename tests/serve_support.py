"""Test support for `churnguard serve`: a private redis-server, a read model written exactly as
docs/read-model.md lays it out, and a `churnguard serve` subprocess.

The read model here is written by hand (the writer's stand-in), from real output models
encoded as on the wire, so the readers can be tested without the sink.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis
import requests

from schemas.codec import encode
from schemas.outputs import AlertEvent, TaskEvent
from streams.broker import free_port, stop_process

PREFIX = "churnguard:"
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@dataclass
class RedisServer:
    """A redis-server subprocess on a free port, without persistence."""

    workdir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(
            [
                *(REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(self.workdir)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = self.client()
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            stop_process(proc, 10)


@dataclass(frozen=True)
class FakeCustomer:
    """One customer of the fixture read model."""

    customer_id: str
    name: str
    tier: str | None
    health: int | None
    trend: int
    stage: str = "active"
    alerts: tuple[tuple[str, str, str], ...] = ()  # (rule_id, severity, status)


CUSTOMERS = (
    FakeCustomer("c-acme", "Acme Corp", "strategic", 22, -18, "at_risk",
                 (("key-contact-departed", "high", "firing"), ("low-csat", "medium", "resolved"))),
    FakeCustomer("c-globex", "Globex", "strategic", 71, 3),
    FakeCustomer("c-initech", "Initech", "key", 35, -9, "at_risk",
                 (("complaint-spike", "high", "firing"),)),
    FakeCustomer("c-umbrella", "Umbrella", "key", 58, -2),
    FakeCustomer("c-hooli", "Hooli", "growth", 41, -6, "active",
                 (("complaint-spike", "high", "firing"), ("inactivity", "medium", "firing"))),
    FakeCustomer("c-soylent", "Soylent", "growth", 88, 5),
    FakeCustomer("c-stark", "Stark Industries", "normal", 64, 0),
    FakeCustomer("c-wayne", "Wayne Enterprises", "normal", 12, -25, "at_risk",
                 (("customer-dormant", "critical", "firing"),)),
    FakeCustomer("c-tyrell", "Tyrell", None, 50, 1),
    FakeCustomer("c-new", "Newcomer", "normal", None, 0, "onboarding"),
)  # fmt: skip


def alert_event(customer: FakeCustomer, rule_id: str, severity: str, status: str) -> AlertEvent:
    """A wire alert for the fixture."""
    fired = NOW - timedelta(days=3, hours=len(rule_id))
    return AlertEvent.model_validate(
        {
            "alert_id": f"{customer.customer_id}:{rule_id}",
            "customer_id": customer.customer_id,
            "rule_id": rule_id,
            "severity": severity,
            "status": status,
            "summary": f"{customer.name}: {rule_id}",
            "evidence": {"complaints_7d": 4},
            "tier": customer.tier,
            "fired_at": fired,
            "resolved_at": fired + timedelta(days=1) if status == "resolved" else None,
            "resolution": "cleared" if status == "resolved" else None,
            "emitted_at": NOW,
        }
    )


def task_event(alert: AlertEvent) -> TaskEvent:
    """The task a fixture alert opened."""
    return TaskEvent.model_validate(
        {
            "task_id": f"{alert.alert_id}:t1",
            "alert_id": alert.alert_id,
            "customer_id": alert.customer_id,
            "rule_id": alert.rule_id,
            "assignee": "ann.owner",
            "assignee_role": "owner",
            "title": f"Call {alert.customer_id} about {alert.rule_id}",
            "playbook": "relationship-rescue",
            "priority": "high",
            "due_at": alert.fired_at + timedelta(days=1),
            "status": "open",
            "created_at": alert.fired_at,
        }
    )


def write_read_model(client: redis.Redis, customers: tuple[FakeCustomer, ...] = CUSTOMERS) -> None:
    """Write the customers' keys as docs/read-model.md lays them out."""
    pipe = client.pipeline(transaction=False)
    for c in customers:
        key = f"{PREFIX}customer:{c.customer_id}"
        alerts = [alert_event(c, *spec) for spec in c.alerts]
        firing = [a for a in alerts if a.status == "firing"]
        as_of_ms = int(NOW.timestamp() * 1000)
        fields = {
            "customer_id": c.customer_id,
            "name": c.name,
            "tier": c.tier or "",
            "lifecycle_stage": c.stage,
            "at_risk": "1" if c.stage == "at_risk" else "0",
            "health_trend_7d": str(c.trend),
            "health_profile": "",
            "factors": '{"activity": {"value": 0.2, "points": 20, "weight": 40.0, '
            '"contribution": 8.0, "missing": false}, "support": {"value": 3, "points": 35, '
            '"weight": 35.0, "contribution": 12.25, "missing": false}, "value": {"value": null,'
            ' "points": 50, "weight": 25.0, "contribution": 12.5, "missing": true}}',
            "features": '{"logins_7d": 3, "complaints_7d": 4}',
            "open_alerts": "[" + ",".join(f'"{a.alert_id}"' for a in firing) + "]",
            "as_of": NOW.isoformat(),
            "as_of_ms": str(as_of_ms),
        }
        if c.tier is None:
            del fields["tier"]
        if c.health is not None:
            fields["health"] = str(c.health)
            tier = c.tier or "none"
            pipe.zadd(f"{PREFIX}at-risk", {c.customer_id: 100 - c.health})
            pipe.zadd(f"{PREFIX}at-risk:tier:{tier}", {c.customer_id: 100 - c.health})
            pipe.sadd(f"{PREFIX}tiers", tier)
            for day in range(30, -1, -1):
                at = as_of_ms - day * 86_400_000
                score = max(0, min(100, c.health - c.trend * day // 7))
                pipe.zadd(f"{PREFIX}customer:{c.customer_id}:health", {f"{at}:{score}": at})
        pipe.hset(key, mapping=fields)
        for a in alerts:
            raw = encode(a)
            pipe.set(f"{PREFIX}alert:{a.alert_id}", raw)
            pipe.hset(f"{PREFIX}customer:{c.customer_id}:alerts", a.alert_id, raw)
            pipe.xadd(f"{PREFIX}alerts:recent", {"alert": raw}, maxlen=10_000, approximate=True)
            fired_ms = int(a.fired_at.timestamp() * 1000)
            if a.status == "firing":
                pipe.zadd(f"{PREFIX}alerts:firing", {a.alert_id: fired_ms})
                pipe.zadd(f"{PREFIX}alerts:firing:rule:{a.rule_id}", {a.alert_id: fired_ms})
                task = task_event(a)
                pipe.hset(f"{PREFIX}customer:{c.customer_id}:tasks", task.task_id, encode(task))
    pipe.execute()


@dataclass
class ServeProcess:
    """A `churnguard serve` subprocess."""

    env: dict[str, str]
    log_path: Path
    args: tuple[str, ...] = ("--no-sink",)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> ServeProcess:
        env = {**os.environ, **self.env, "CHURNGUARD_SERVE_PORT": str(self.port)}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "agents", "serve", *self.args],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited ({self.proc.returncode}):\n{self.log()}")
            try:
                if requests.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"serve did not answer /healthz:\n{self.log()}")
            time.sleep(0.1)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> int:
        proc, self.proc = self.proc, None
        return 0 if proc is None else stop_process(proc, 15)


@contextmanager
def serve_over_fixture(workdir: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """A `churnguard serve --no-sink` over a private Redis holding the fixture read model;
    yields its base URL. ``env`` adds settings. A traceback in its log fails the caller."""
    redis_server = RedisServer(workdir).start()
    serve = ServeProcess(
        {"CHURNGUARD_REDIS_URL": redis_server.url, **(env or {})}, workdir / "serve.log"
    )
    try:
        write_read_model(redis_server.client())
        serve.start()
        yield serve.url
    finally:
        serve.stop()
        redis_server.stop()
    assert "Traceback" not in serve.log(), serve.log()
