"""``churnguard serve``: the read-model sink, the HTTP API and the dashboard in one process.

One aiohttp server on ``CHURNGUARD_SERVE_HOST:CHURNGUARD_SERVE_PORT`` answers the API
(agents/api.py), the dashboard at ``/`` (agents/dashboard/), ``/metrics``, ``/healthz``
and ``/readyz``; beside it the read-model sink keeps Redis up to date from the output topics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, Protocol

import click
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.typedefs import Middleware
from aiokafka.errors import KafkaError
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest

from agents.api import Handler, add_api, json_errors, rules_summary
from agents.api_auth import bearer_auth
from agents.api_queries import ReadModelQueries
from agents.redis_client import make_redis
from rules.loader import RulePackError, load_rules
from streams.settings import Settings

log = logging.getLogger(__name__)

MAX_LINE_BYTES = 65536
"""The longest request line answered by the API (JSON errors); aiohttp's default is 8190."""
DASHBOARD_DIR = Path(__file__).resolve().parent / "dashboard"


class Readiness(Protocol):
    """Answers which readiness checks pass (True), fail (False) or do not apply (None)."""

    def __call__(self) -> Awaitable[dict[str, bool | None]]: ...


REGISTRY = web.AppKey("registry", CollectorRegistry)
READINESS = web.AppKey("readiness", Readiness)


class Sink(Protocol):
    """What serve needs of the read-model sink (agents/redis_sink.ReadModelSink)."""

    @property
    def ready(self) -> bool: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def request_counter(registry: CollectorRegistry) -> Counter:
    """``churnguard_api_requests_total{route,status}`` in ``registry``."""
    return Counter(
        "churnguard_api_requests_total",
        "HTTP requests answered by churnguard serve, by route template and status code",
        ["route", "status"],
        registry=registry,
    )


def counting(requests: Counter) -> Middleware:
    """A middleware counting every answer by route template and status."""

    @web.middleware
    async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        requests.labels(route=route, status=str(response.status)).inc()
        return response

    return count


async def healthz(request: web.Request) -> web.Response:
    """``GET /healthz``: the process is up."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """``GET /readyz``: 200 when Redis answers and the sink is ready, else 503 with reasons."""
    checks = await request.app[READINESS]()
    reasons = [name for name, ok in checks.items() if ok is False]
    body = {"ready": not reasons, "checks": checks, "reasons": reasons}
    return web.json_response(body, status=503 if reasons else 200)


async def metrics(request: web.Request) -> web.Response:
    """``GET /metrics``: the process's Prometheus metrics (sink and API)."""
    body = generate_latest(request.app[REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def dashboard(request: web.Request) -> web.FileResponse:
    """``GET /``: the customer-success dashboard page."""
    return web.FileResponse(DASHBOARD_DIR / "index.html")


def build_web_app(
    queries: ReadModelQueries,
    rules: dict[str, Any],
    registry: CollectorRegistry,
    readiness: Readiness,
    token: str | None = None,
) -> web.Application:
    """The aiohttp application: API, dashboard, metrics and probes (``token``: the bearer
    token the API requires, see agents/api_auth.py)."""
    middlewares = [counting(request_counter(registry)), json_errors]
    if token is not None:
        middlewares.append(bearer_auth(token))
    app = web.Application(middlewares=middlewares)
    app[REGISTRY] = registry
    app[READINESS] = readiness
    add_api(app, queries, rules)
    app.router.add_get("/", dashboard)
    app.router.add_static("/static/", DASHBOARD_DIR)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


def make_sink(settings: Settings, registry: CollectorRegistry, redis: aioredis.Redis) -> Sink:
    """The read-model sink writing into ``redis`` with its metrics in ``registry``."""
    from agents.redis_sink import ReadModelSink

    return ReadModelSink(settings, registry, redis)


async def run_serve(settings: Settings, rules: dict[str, Any], with_sink: bool = True) -> None:
    """Serve until SIGINT or SIGTERM, then stop the sink and the server cleanly."""
    registry = CollectorRegistry()
    redis = make_redis(settings)
    queries = ReadModelQueries(redis, settings.redis_key_prefix)
    sink = make_sink(settings, registry, redis) if with_sink else None

    async def readiness() -> dict[str, bool | None]:
        return {"redis": await queries.ping(), "sink": None if sink is None else sink.ready}

    token = settings.serve_token.get_secret_value() if settings.serve_token else None
    app = build_web_app(queries, rules, registry, readiness, token)
    # aiohttp answers a longer request line with a plain-text 400 before any handler runs;
    # the request handler's own arguments (an AppRunner's handler_args are dropped silently)
    runner = web.AppRunner(app, access_log=None, max_line_size=MAX_LINE_BYTES)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await runner.setup()
        site = web.TCPSite(runner, settings.serve_host, settings.serve_port)
        await site.start()
        log.info(
            "serving API and dashboard on http://%s:%d/ (read model %s, sink %s)",
            settings.serve_host,
            settings.serve_port,
            settings.redis_key_prefix,
            "on" if sink else "off",
        )
        if token is None and settings.serve_host not in ("127.0.0.1", "::1", "localhost"):
            log.warning(
                "serving on %s without CHURNGUARD_SERVE_TOKEN: anyone who reaches the port "
                "reads the read model",
                settings.serve_host,
            )
        if sink is not None:
            await sink.start()
        await stop.wait()
        log.info("stopping")
    finally:
        if sink is not None:
            await sink.stop()
        await runner.cleanup()
        await redis.aclose()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


@click.command("serve")
@click.option(
    "--sink/--no-sink",
    default=True,
    show_default=True,
    help="Run the read-model sink in this process (--no-sink: API and dashboard only, "
    "reading a Redis that another `serve` keeps up to date).",
)
@click.option("--host", default=None, help="Interface to bind [CHURNGUARD_SERVE_HOST].")
@click.option("--port", type=int, default=None, help="Port to bind [CHURNGUARD_SERVE_PORT].")
@click.option(
    "-l",
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
def serve_command(sink: bool, host: str | None, port: int | None, log_level: str) -> None:
    """Serve the HTTP API and the customer-success dashboard over the Redis read model.

    Also runs the read-model sink (cs.customer-health, cs.alerts, cs.tasks into Redis)
    unless --no-sink. Open http://HOST:PORT/ for the dashboard; the API is described at
    /openapi.json (GET /customers/{id}, /at-risk, /alerts, /rules, /tiers); /metrics,
    /healthz and /readyz for operations. Configured with CHURNGUARD_* variables
    (CHURNGUARD_REDIS_URL, CHURNGUARD_SERVE_HOST, CHURNGUARD_SERVE_PORT, the broker and topics).
    """
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = Settings()
        overrides = {k: v for k, v in (("serve_host", host), ("serve_port", port)) if v is not None}
        settings = settings.model_copy(update=overrides)
        rule_set = load_rules(settings.rule_packs)
    except RulePackError as exc:
        click.echo(f"churnguard serve: invalid rule pack:\n{exc}", err=True)
        sys.exit(2)
    except ValueError as exc:
        click.echo(f"churnguard serve: cannot start: {exc}", err=True)
        sys.exit(2)
    rules = rules_summary(rule_set, settings.rule_packs)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(run_serve(settings, rules, with_sink=sink))
    except (OSError, KafkaError) as exc:  # port taken, broker unreachable for the sink
        click.echo(f"churnguard serve: cannot start: {exc!r}", err=True)
        sys.exit(2)
