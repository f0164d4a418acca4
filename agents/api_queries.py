"""Reads of the Redis read model (docs/read-model.md) for the HTTP API: keys in, JSON out.

Only the keys the read-model sink writes are read, never written.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, cast

import orjson
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from agents.api_params import AlertsQuery, AtRiskQuery

log = logging.getLogger(__name__)

JSON_FIELDS = ("factors", "rfm", "clv", "features", "open_alerts")
INT_FIELDS = ("health", "health_trend_7d", "as_of_ms")
LIST_FIELDS = ("name", "tier", "health", "health_trend_7d", "lifecycle_stage", "at_risk")
RECENT_SCAN_FACTOR = 5
MAX_RECENT_SCAN = 5000
EPOCH = datetime.fromisoformat("1970-01-01T00:00:00+00:00")


def text(value: Any) -> str | None:
    """A Redis reply as text (clients may or may not decode responses)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def parse_json(raw: bytes | str | None, where: str) -> Any:
    """A JSON value stored by the sink, or None if it is absent or unreadable (logged)."""
    if raw is None:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        log.warning("read model: unreadable JSON at %s, ignored", where)
        return None


def parse_int(raw: bytes | str | None) -> int | None:
    """An integer hash field, or None if absent or not an integer."""
    value = text(raw)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def event_time(iso: object) -> datetime:
    """An ISO 8601 time from a stored event, for ordering (the epoch if missing or bad)."""
    if not isinstance(iso, str):
        return EPOCH
    try:
        parsed = datetime.fromisoformat(iso)
    except ValueError:
        return EPOCH
    return parsed if parsed.tzinfo is not None else EPOCH


def alert_order(alert: dict[str, Any]) -> tuple[datetime, datetime]:
    """Sort key of an alert event: when its latest step happened, then when it was sent."""
    return (
        event_time(alert.get("resolved_at") or alert.get("fired_at")),
        event_time(alert.get("emitted_at")),
    )


def or_empty(reply: Any, empty: Any) -> Any:
    """A pipelined reply, or ``empty`` where the key holds another type (WRONGTYPE): a customer
    id containing ':' can name another customer's sub-key, e.g. ``c-1:health``."""
    return empty if isinstance(reply, ResponseError) else reply


def customer_view(fields: dict[str, str | None]) -> dict[str, Any]:
    """The customer hash as the API shows it: JSON fields parsed, numbers as numbers."""
    view: dict[str, Any] = dict(fields)
    key = fields.get("customer_id") or "?"
    for name in JSON_FIELDS:
        view[name] = parse_json(fields.get(name), f"customer:{key} {name}")
    for name in INT_FIELDS:
        view[name] = parse_int(fields.get(name))
    view["at_risk"] = fields.get("at_risk") == "1"
    if not isinstance(view["open_alerts"], list):
        view["open_alerts"] = []
    return view


def health_history(members: list[Any]) -> list[dict[str, int]]:
    """Chart points from the ``customer:{id}:health`` members ``"{as_of_ms}:{score}"``."""
    points: list[dict[str, int]] = []
    for member in members:
        as_of, _, score = (text(member) or "").partition(":")
        if as_of.lstrip("-").isdigit() and score.lstrip("-").isdigit():
            points.append({"as_of_ms": int(as_of), "score": int(score)})
    return points


def matches(alert: dict[str, Any], status: str, rule: str | None) -> bool:
    """True if an alert event has the wanted status (``all``: any) and rule."""
    return (status == "all" or alert.get("status") == status) and (
        rule is None or alert.get("rule_id") == rule
    )


class ReadModelQueries:
    """The API's questions to the read model under one key prefix."""

    def __init__(self, redis: aioredis.Redis, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix

    def key(self, *parts: str) -> str:
        """A read-model key: the prefix, then the parts joined by ':'."""
        return self.prefix + ":".join(parts)

    async def ping(self) -> bool:
        """True if Redis answers."""
        try:
            return bool(await self.redis.ping())
        except (aioredis.RedisError, OSError):
            return False

    async def customer(self, customer_id: str) -> dict[str, Any] | None:
        """The 360° view of one customer, or None if the read model does not know it."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.key("customer", customer_id))
            pipe.zrange(self.key("customer", customer_id, "health"), 0, -1)
            pipe.hvals(self.key("customer", customer_id, "alerts"))
            pipe.hvals(self.key("customer", customer_id, "tasks"))
            replies = await pipe.execute(raise_on_error=False)
        raw, history, alerts, tasks = (or_empty(reply, []) for reply in replies)
        if not raw:
            return None
        view = customer_view({text(k) or "": text(v) for k, v in raw.items()})
        view["customer_id"] = view.get("customer_id") or customer_id
        view["health_history"] = health_history(history)
        parsed_alerts = [parse_json(a, f"customer:{customer_id}:alerts") for a in alerts]
        view["alerts"] = sorted(
            (a for a in parsed_alerts if isinstance(a, dict)), key=alert_order, reverse=True
        )
        parsed_tasks = [parse_json(t, f"customer:{customer_id}:tasks") for t in tasks]
        view["tasks"] = sorted(
            (t for t in parsed_tasks if isinstance(t, dict)),
            key=lambda t: event_time(t.get("created_at")),
            reverse=True,
        )
        return view

    async def tiers(self) -> list[str]:
        """The tiers seen, sorted."""
        return sorted(text(t) or "" for t in await self.redis.smembers(self.key("tiers")))

    async def at_risk(self, query: AtRiskQuery) -> tuple[list[dict[str, Any]], int | None]:
        """One page of the risk ranking (worst first) and the next page's offset (None: last)."""
        ranking = self.key("at-risk", "tier", query.tier) if query.tier else self.key("at-risk")
        if query.rule is None:
            stop = query.offset + query.limit  # one more than the page, to know if more follow
            ranked = cast(
                "list[tuple[Any, float]]",
                await self.redis.zrevrange(ranking, query.offset, stop, withscores=True),
            )
            page = [(text(member) or "", float(score)) for member, score in ranked]
        else:
            page = await self._ranked_with_rule(ranking, query.rule)
            page = page[query.offset : query.offset + query.limit + 1]
        more = len(page) > query.limit
        page = page[: query.limit]
        items = await self._at_risk_items(page)
        return items, (query.offset + query.limit if more else None)

    async def _ranked_with_rule(self, ranking: str, rule: str) -> list[tuple[str, float]]:
        firing: list[Any] = await self.redis.zrange(
            self.key("alerts", "firing", "rule", rule), 0, -1
        )
        alerts = await self._alerts_by_id([text(a) or "" for a in firing])
        customers = sorted({str(a.get("customer_id")) for a in alerts if a.get("customer_id")})
        if not customers:
            return []
        scores = await self.redis.zmscore(ranking, customers)
        ranked = [(c, float(s)) for c, s in zip(customers, scores, strict=True) if s is not None]
        return sorted(ranked, key=lambda item: (-item[1], item[0]))

    async def _at_risk_items(self, page: list[tuple[str, float]]) -> list[dict[str, Any]]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for customer_id, _ in page:
                pipe.hmget(self.key("customer", customer_id), [*LIST_FIELDS, "open_alerts"])
            rows = [
                or_empty(r, [None] * (len(LIST_FIELDS) + 1))
                for r in await pipe.execute(raise_on_error=False)
            ]
        items: list[dict[str, Any]] = []
        wanted: list[str] = []
        for (customer_id, risk), row in zip(page, rows, strict=True):
            values = [text(v) for v in row]
            fields = dict(zip((*LIST_FIELDS, "open_alerts"), values, strict=True))
            open_ids = parse_json(fields["open_alerts"], f"customer:{customer_id} open_alerts")
            open_ids = [str(a) for a in open_ids] if isinstance(open_ids, list) else []
            wanted.extend(open_ids)
            items.append(
                {
                    "customer_id": customer_id,
                    "name": fields["name"],
                    "tier": fields["tier"],
                    "health": parse_int(fields["health"]),
                    "trend_7d": parse_int(fields["health_trend_7d"]),
                    "risk": risk,
                    "lifecycle_stage": fields["lifecycle_stage"],
                    "at_risk": fields["at_risk"] == "1",
                    "open_alerts": open_ids,
                }
            )
        alerts = {a.get("alert_id"): a for a in await self._alerts_by_id(wanted)}
        for item in items:
            item["open_alerts"] = [
                {
                    "alert_id": alert_id,
                    "rule_id": alerts[alert_id].get("rule_id"),
                    "severity": alerts[alert_id].get("severity"),
                }
                for alert_id in item["open_alerts"]
                if alert_id in alerts
            ]
        return items

    async def _alerts_by_id(self, alert_ids: list[str]) -> list[dict[str, Any]]:
        if not alert_ids:
            return []
        raw = await self.redis.mget([self.key("alert", a) for a in alert_ids])
        parsed = [parse_json(r, f"alert:{a}") for a, r in zip(alert_ids, raw, strict=True)]
        return [a for a in parsed if isinstance(a, dict)]

    async def alerts(self, query: AlertsQuery) -> list[dict[str, Any]]:
        """Alert events, newest first: firing ones from the firing sets, a customer's from its
        alerts hash, resolved and all from the recent-alerts stream (its latest event per alert)."""
        if query.customer is not None:
            try:
                raw = await self.redis.hvals(self.key("customer", query.customer, "alerts"))
            except ResponseError:  # the id names a key of another type (see or_empty)
                raw = []
            parsed = [parse_json(r, f"customer:{query.customer}:alerts") for r in raw]
            found = [a for a in parsed if isinstance(a, dict)]
            chosen = [a for a in found if matches(a, query.status, query.rule)]
            return sorted(chosen, key=alert_order, reverse=True)[: query.limit]
        if query.status == "firing":
            firing = (
                self.key("alerts", "firing", "rule", query.rule)
                if query.rule
                else self.key("alerts", "firing")
            )
            ids: list[Any] = await self.redis.zrevrange(firing, 0, query.limit - 1)
            return await self._alerts_by_id([text(a) or "" for a in ids])
        return await self._recent(query)

    async def _recent(self, query: AlertsQuery) -> list[dict[str, Any]]:
        count = min(query.limit * RECENT_SCAN_FACTOR, MAX_RECENT_SCAN)
        entries = cast(
            "list[tuple[Any, dict[Any, Any]]]",
            await self.redis.xrevrange(self.key("alerts", "recent"), count=count),
        )
        seen: set[str] = set()
        chosen: list[dict[str, Any]] = []
        for entry_id, fields in entries:
            value = fields.get(b"alert") or fields.get("alert")
            alert = parse_json(value, f"alerts:recent {text(entry_id)}")
            if not isinstance(alert, dict) or alert.get("alert_id") in seen:
                continue
            seen.add(str(alert.get("alert_id")))
            if matches(alert, query.status, query.rule):
                chosen.append(alert)
                if len(chosen) == query.limit:
                    break
        return chosen
