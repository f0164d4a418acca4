"""The HTTP API of ``churnguard serve``: aiohttp handlers over the Redis read model.

Every answer is JSON; bad parameters get 400, unknown customers 404, an unreachable Redis 503,
each with ``{"error": ..., "detail": ...}``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
import yaml
from aiohttp import web

from agents.api_params import MAX_ID_CHARS, BadParameter, parse_alerts, parse_at_risk
from agents.api_queries import ReadModelQueries
from rules.loader import RuleSet

log = logging.getLogger(__name__)

OPENAPI_PATH = Path(__file__).resolve().parent / "openapi.yaml"

QUERIES = web.AppKey("queries", ReadModelQueries)
RULES = web.AppKey("rules", dict)
OPENAPI = web.AppKey("openapi", dict)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(status: int, error: str, detail: Any = None) -> web.Response:
    """The API's JSON error body with ``status``."""
    return web.json_response({"error": error, "detail": detail}, status=status)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turns every failure into a JSON error body: 400, 404, 405, 503 (Redis), never a crash."""
    try:
        return await handler(request)
    except BadParameter as exc:
        return error_response(400, "bad parameter", {"parameter": exc.name, "message": str(exc)})
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(exc.status, exc.reason, {"path": request.path})
    except (aioredis.RedisError, OSError) as exc:
        log.warning("read model unavailable for %s: %s", request.path, exc)
        return error_response(503, "read model unavailable", str(exc))
    except Exception:
        log.exception("unexpected error answering %s %s", request.method, request.path_qs)
        return error_response(500, "internal error", None)


def rules_summary(rule_set: RuleSet, packs: Iterable[Path]) -> dict[str, Any]:
    """What ``GET /rules`` shows: the packs, their fingerprint, each rule's id and severity."""
    return {
        "packs": [str(p) for p in packs],
        "fingerprint": rule_set.fingerprint.hex(),
        "rules": [
            {
                "id": compiled.id,
                "description": compiled.rule.description,
                "severity": compiled.rule.severity,
                "labels": compiled.rule.labels,
                "opens_task": compiled.rule.task is not None,
                "time_based": compiled.time_based,
            }
            for compiled in sorted(rule_set.rules, key=lambda c: c.id)
        ],
    }


def load_openapi() -> dict[str, Any]:
    """The OpenAPI document shipped beside this module (read once, at start-up)."""
    document = yaml.safe_load(OPENAPI_PATH.read_text(encoding="utf-8"))
    if not isinstance(document, dict):
        raise ValueError(f"{OPENAPI_PATH} is not an OpenAPI document")
    return document


async def get_customer(request: web.Request) -> web.Response:
    """``GET /customers/{customer_id}``: the customer's 360° view."""
    customer_id = request.match_info["customer_id"]
    if len(customer_id) > MAX_ID_CHARS:
        raise BadParameter("customer_id", f"longer than {MAX_ID_CHARS} characters")
    view = await request.app[QUERIES].customer(customer_id)
    if view is None:
        return error_response(404, "unknown customer", {"customer_id": customer_id})
    return web.json_response(view)


async def get_at_risk(request: web.Request) -> web.Response:
    """``GET /at-risk``: customers ranked by risk, worst first, one page at a time."""
    query = parse_at_risk(request.query)
    items, next_offset = await request.app[QUERIES].at_risk(query)
    next_cursor = None if next_offset is None else str(next_offset)
    return web.json_response({"items": items, "next_cursor": next_cursor})


async def get_alerts(request: web.Request) -> web.Response:
    """``GET /alerts``: firing, resolved or all alerts, by rule or customer, newest first."""
    query = parse_alerts(request.query)
    return web.json_response({"items": await request.app[QUERIES].alerts(query)})


async def get_tiers(request: web.Request) -> web.Response:
    """``GET /tiers``: the tiers the read model has seen."""
    return web.json_response({"tiers": await request.app[QUERIES].tiers()})


async def get_rules(request: web.Request) -> web.Response:
    """``GET /rules``: the loaded rule packs and their fingerprint."""
    return web.json_response(request.app[RULES])


async def get_openapi(request: web.Request) -> web.Response:
    """``GET /openapi.json``: this API's OpenAPI 3 document."""
    return web.json_response(request.app[OPENAPI])


def add_api(app: web.Application, queries: ReadModelQueries, rules: dict[str, Any]) -> None:
    """Mount the API routes on ``app`` (which must use the ``json_errors`` middleware)."""
    app[QUERIES] = queries
    app[RULES] = rules
    app[OPENAPI] = load_openapi()
    app.router.add_get("/customers/{customer_id}", get_customer)
    app.router.add_get("/at-risk", get_at_risk)
    app.router.add_get("/alerts", get_alerts)
    app.router.add_get("/tiers", get_tiers)
    app.router.add_get("/rules", get_rules)
    app.router.add_get("/openapi.json", get_openapi)
