"""``churnguard demo``: broker, worker and synthetic traffic in one command, alerts on screen."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams.broker import EmbeddedBroker, ensure_topics, free_port
from streams.settings import Settings
from streams.synthetic import generate, plan_customers

KIND_TO_SETTING = {
    "login": "topic_logins",
    "order": "topic_orders",
    "ticket": "topic_tickets",
    "contact": "topic_contacts",
    "account": "topic_accounts",
}


@dataclass(frozen=True)
class DemoOptions:
    """What the demo simulates and for how long."""

    duration: float = 100.0
    customers: int = 1000
    days: int = 40
    days_per_second: float = 0.5


def all_topics(settings: Settings) -> list[str]:
    """Every topic churnguard reads or writes."""
    return [
        *settings.input_topics.values(),
        settings.topic_alerts,
        settings.topic_tasks,
        settings.topic_health,
        settings.topic_deadletter,
        settings.topic_rekeyed,
        settings.topic_ticks,
        settings.topic_rfm,
    ]


async def _stop_process(proc: asyncio.subprocess.Process, grace_s: float = 20.0) -> None:
    if proc.returncode is not None:
        return
    proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), grace_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()


async def run_demo(settings: Settings, opts: DemoOptions) -> None:
    """Run broker (unless CHURNGUARD_BROKER is set), worker and traffic; print outputs."""
    workdir = Path(tempfile.mkdtemp(prefix="churnguard-demo-"))
    broker: EmbeddedBroker | None = None
    worker: asyncio.subprocess.Process | None = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tasks: list[asyncio.Task[None]] = []
    seen: Counter[str] = Counter()
    read_model: list[asyncio.subprocess.Process] = []  # redis-server (if started) and serve
    try:
        if "CHURNGUARD_BROKER" in os.environ:
            url = settings.broker
            click.echo(f"demo: using the broker in CHURNGUARD_BROKER ({url})")
        else:
            broker = EmbeddedBroker(log_path=workdir / "broker.log").start()
            url = broker.url
            click.echo(f"demo: embedded Tansu broker on {broker.bootstrap} (in memory)")
        bootstrap = settings.model_copy(update={"broker": url}).bootstrap_servers
        await ensure_topics(bootstrap, all_topics(settings), settings.partitions)
        web_port = free_port()
        env = {
            **os.environ,
            "CHURNGUARD_BROKER": url,
            "CHURNGUARD_CLOCK": "event",  # simulated time runs faster than the wall clock
            "CHURNGUARD_DATA_DIR": str(workdir / "data"),
            "CHURNGUARD_WEB_PORT": str(web_port),
            "CHURNGUARD_BROKER_SESSION_TIMEOUT_S": "6",
            "CHURNGUARD_BROKER_HEARTBEAT_INTERVAL_S": "1",
        }
        worker = await _churnguard(("worker", "-l", "info"), env, workdir / "worker.log")
        click.echo(
            f"demo: worker pid {worker.pid}, metrics http://127.0.0.1:{web_port}/metrics, "
            f"log {workdir / 'worker.log'}"
        )
        read_model = await _start_read_model(settings, env, workdir)
        start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        start -= timedelta(days=opts.days)
        click.echo(
            f"demo: {opts.customers} customers, {opts.days} simulated days at "
            f"{opts.days_per_second} days/s; stopping after {opts.duration:.0f}s (Ctrl-C stops)"
        )
        tasks = [
            asyncio.create_task(_print_outputs(bootstrap, settings, start, seen)),
            asyncio.create_task(_produce(bootstrap, settings, opts, start)),
        ]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=opts.duration)
        if worker.returncode is not None:
            click.echo(f"demo: the worker exited early (code {worker.returncode}); see its log")
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        if worker is not None:
            await _stop_process(worker)
        for proc in reversed(read_model):
            await _stop_process(proc)
        if broker is not None:
            broker.stop()
        summary = ", ".join(f"{k}: {v}" for k, v in sorted(seen.items())) or "nothing"
        click.echo(f"demo: stopped cleanly. Seen {summary}")
        shutil.rmtree(workdir, ignore_errors=True)


async def _start_read_model(
    settings: Settings, env: dict[str, str], workdir: Path
) -> list[asyncio.subprocess.Process]:
    """Start `churnguard serve` (read-model sink, API, dashboard) beside the worker, on a
    private redis-server when one is installed and CHURNGUARD_REDIS_URL is not set; print the
    dashboard's URL."""
    started: list[asyncio.subprocess.Process] = []
    redis_server = shutil.which("redis-server")
    env = dict(env)
    if "CHURNGUARD_REDIS_URL" not in os.environ and redis_server is not None:
        redis_port = free_port()
        started.append(
            await asyncio.create_subprocess_exec(
                *(redis_server, "--port", str(redis_port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(workdir)),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        )
        env["CHURNGUARD_REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
    if "CHURNGUARD_SERVE_PORT" not in os.environ and not _port_free(settings.serve_port):
        env["CHURNGUARD_SERVE_PORT"] = str(free_port())  # another serve has the default
    host = env.get("CHURNGUARD_SERVE_HOST", settings.serve_host)
    port = env.get("CHURNGUARD_SERVE_PORT", str(settings.serve_port))
    started.append(await _churnguard(("serve",), env, workdir / "serve.log"))
    click.echo(
        f"demo: dashboard http://{host}:{port}/ (customers at risk fill in as health snapshots "
        f"arrive; read model in {env.get('CHURNGUARD_REDIS_URL', settings.redis_url)}, "
        f"log {workdir / 'serve.log'})"
    )
    return started


def _port_free(port: int) -> bool:
    """True if nothing listens on 127.0.0.1:``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


async def _produce(bootstrap: str, settings: Settings, opts: DemoOptions, start: datetime) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    await producer.start()
    try:
        plans = plan_customers(opts.customers)
        began = time.monotonic()
        for record in generate(plans, start=start, days=opts.days):
            sim_days = (record.occurred_at - start).total_seconds() / 86400
            ahead = began + sim_days / opts.days_per_second - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)
            topic = getattr(settings, KIND_TO_SETTING[record.topic_kind])
            await producer.send(topic, orjson.dumps(record.value), key=record.key.encode())
        await producer.flush()
        click.echo("demo: all simulated traffic sent")
    finally:
        await producer.stop()


async def _print_outputs(
    bootstrap: str, settings: Settings, start: datetime, seen: Counter[str]
) -> None:
    consumer = AIOKafkaConsumer(
        settings.topic_alerts,
        settings.topic_tasks,
        settings.topic_deadletter,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    try:
        async for msg in consumer:
            value = orjson.loads(msg.value or b"{}")
            line = _describe(msg.topic, value, settings, start)
            seen[line[0]] += 1
            click.echo(line[1])
    finally:
        await consumer.stop()


def _sim_day(iso: str, start: datetime) -> str:
    return f"day {(datetime.fromisoformat(iso) - start).total_seconds() / 86400:5.1f}"


def _describe(
    topic: str, v: dict[str, object], settings: Settings, start: datetime
) -> tuple[str, str]:
    """(counter key, one readable line) for an output record."""
    if topic == settings.topic_alerts:
        when = v["resolved_at"] if v["status"] == "resolved" else v["fired_at"]
        return (
            f"{v['rule_id']} {v['status']}",
            f"ALERT {v['status']:<8} {v['severity']:<8} {v['rule_id']:<22} "
            f"{v['customer_id']}  {_sim_day(str(when), start)}  {v['summary']}",
        )
    if topic == settings.topic_tasks:
        return (
            f"tasks {v['status']}",
            f"TASK  {v['status']:<8} {v['priority']:<8} {v['customer_id']} -> {v['assignee']} "
            f"({v['assignee_role']}) due {_sim_day(str(v['due_at']), start)} "
            f"playbook {v['playbook']}: {v['title']}",
        )
    return (
        "dead letters",
        f"DEAD  {v.get('reason')} {v.get('source_topic')}@{v.get('offset')}: {v.get('error')}",
    )


async def _churnguard(
    args: tuple[str, ...], env: dict[str, str], log_path: Path
) -> asyncio.subprocess.Process:
    """A ``churnguard ARGS`` subprocess in its own session, its output in ``log_path``."""
    with log_path.open("wb") as log_file:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "agents", *args),
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
