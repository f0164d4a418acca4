"""The HTTP API of `churnguard serve` against a real Redis holding the documented key layout.

A real redis-server and a real `churnguard serve --no-sink` process; the read model is written
as docs/read-model.md lays it out (tests/serve_support.py), so these tests pin the reader's
side of that contract.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from rules.loader import load_rules
from streams.settings import BUILTIN_PACKS
from tests.serve_support import CUSTOMERS, RedisServer, ServeProcess, serve_over_fixture

pytestmark = pytest.mark.integration

SCORED = sorted((c for c in CUSTOMERS if c.health is not None), key=lambda c: c.health or 0)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of a serve process over a Redis filled with the fixture read model."""
    with serve_over_fixture(tmp_path_factory.mktemp("api")) as url:
        yield url


def get(url: str, expect: int = 200) -> Any:
    response = requests.get(url, timeout=10)
    assert response.status_code == expect, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    return response.json()


def test_at_risk_ranks_scored_customers_worst_first(served: str) -> None:
    page = get(f"{served}/at-risk")
    ids = [item["customer_id"] for item in page["items"]]
    assert ids == [c.customer_id for c in SCORED]  # c-new has no score: not ranked
    assert page["next_cursor"] is None
    wayne = page["items"][0]
    assert wayne == {
        "customer_id": "c-wayne",
        "name": "Wayne Enterprises",
        "tier": "normal",
        "health": 12,
        "trend_7d": -25,
        "risk": 88.0,
        "lifecycle_stage": "at_risk",
        "at_risk": True,
        "open_alerts": [
            {
                "alert_id": "c-wayne:customer-dormant",
                "rule_id": "customer-dormant",
                "severity": "critical",
            }
        ],
    }


def test_at_risk_open_alerts_list_only_firing_alerts(served: str) -> None:
    items = {i["customer_id"]: i for i in get(f"{served}/at-risk")["items"]}
    assert [a["rule_id"] for a in items["c-acme"]["open_alerts"]] == ["key-contact-departed"]
    assert {a["rule_id"] for a in items["c-hooli"]["open_alerts"]} == {
        "complaint-spike",
        "inactivity",
    }
    assert items["c-globex"]["open_alerts"] == []


@pytest.mark.parametrize(
    ("tier", "expected"),
    [
        ("strategic", ["c-acme", "c-globex"]),
        ("key", ["c-initech", "c-umbrella"]),
        ("none", ["c-tyrell"]),
        ("unheard-of", []),
    ],
)
def test_at_risk_filters_by_tier(served: str, tier: str, expected: list[str]) -> None:
    items = get(f"{served}/at-risk?tier={tier}")["items"]
    assert [i["customer_id"] for i in items] == expected


def test_at_risk_filters_by_rule_with_an_open_alert(served: str) -> None:
    items = get(f"{served}/at-risk?rule=complaint-spike")["items"]
    assert [i["customer_id"] for i in items] == ["c-initech", "c-hooli"]
    # low-csat resolved for c-acme: no open alert of that rule anywhere
    assert get(f"{served}/at-risk?rule=low-csat")["items"] == []
    both = get(f"{served}/at-risk?rule=complaint-spike&tier=growth")["items"]
    assert [i["customer_id"] for i in both] == ["c-hooli"]


@pytest.mark.parametrize("query", ["", "&tier=strategic", "&rule=complaint-spike"])
def test_cursor_pages_through_each_customer_once(served: str, query: str) -> None:
    whole = [i["customer_id"] for i in get(f"{served}/at-risk?limit=500{query}")["items"]]
    seen: list[str] = []
    url = f"{served}/at-risk?limit=1{query}"
    while True:
        page = get(url)
        seen.extend(i["customer_id"] for i in page["items"])
        if page["next_cursor"] is None:
            break
        url = f"{served}/at-risk?limit=1{query}&cursor={page['next_cursor']}"
    assert seen == whole
    assert len(set(seen)) == len(seen)


def test_customer_view_parses_the_hash_and_adds_history_alerts_tasks(served: str) -> None:
    acme = get(f"{served}/customers/c-acme")
    assert acme["name"] == "Acme Corp"
    assert acme["tier"] == "strategic"
    assert acme["health"] == 22
    assert acme["health_trend_7d"] == -18
    assert acme["at_risk"] is True
    assert acme["open_alerts"] == ["c-acme:key-contact-departed"]
    assert acme["factors"]["support"]["contribution"] == 12.25
    assert acme["features"] == {"logins_7d": 3, "complaints_7d": 4}
    history = acme["health_history"]
    assert len(history) == 31
    assert [p["as_of_ms"] for p in history] == sorted(p["as_of_ms"] for p in history)
    assert history[-1] == {"as_of_ms": acme["as_of_ms"], "score": 22}
    assert {(a["rule_id"], a["status"]) for a in acme["alerts"]} == {
        ("key-contact-departed", "firing"),
        ("low-csat", "resolved"),
    }
    assert [t["task_id"] for t in acme["tasks"]] == ["c-acme:key-contact-departed:t1"]


def test_customer_without_score_has_no_health(served: str) -> None:
    new = get(f"{served}/customers/c-new")
    assert new["health"] is None
    assert new["health_history"] == []


@pytest.mark.parametrize("customer_id", ["nobody", "c-acme:health", "a%2Fb", "%C3%A9t%C3%A9"])
def test_unknown_customer_is_404_with_json_error(served: str, customer_id: str) -> None:
    body = get(f"{served}/customers/{customer_id}", expect=404)
    assert body["error"] == "unknown customer"
    assert "customer_id" in body["detail"]


@pytest.mark.parametrize(
    ("path", "parameter"),
    [
        ("/at-risk?limit=0", "limit"),
        ("/at-risk?limit=501", "limit"),
        ("/at-risk?limit=ten", "limit"),
        ("/at-risk?limit=-1", "limit"),
        ("/at-risk?limit=%EF%BC%93", "limit"),  # a full-width digit is not a number here
        ("/at-risk?cursor=abc", "cursor"),
        ("/at-risk?cursor=-5", "cursor"),
        ("/at-risk?cursor=99999999999", "cursor"),
        ("/at-risk?tier=" + "t" * 201, "tier"),
        ("/at-risk?rule=" + "%C2%92" * 3000, "rule"),  # an 18 KB request line: still JSON
        ("/alerts?status=open", "status"),
        ("/alerts?limit=1000", "limit"),
        ("/alerts?customer=" + "c" * 201, "customer"),
        ("/customers/" + "c" * 201, "customer_id"),
    ],
)
def test_bad_parameters_get_400_naming_the_parameter(
    served: str, path: str, parameter: str
) -> None:
    body = get(served + path, expect=400)
    assert body["error"] == "bad parameter"
    assert body["detail"]["parameter"] == parameter


def test_unknown_path_and_method_get_json_errors(served: str) -> None:
    assert get(f"{served}/no-such-thing", expect=404)["error"] == "Not Found"
    response = requests.post(f"{served}/at-risk", timeout=10)
    assert response.status_code == 405
    assert response.json()["error"] == "Method Not Allowed"


def test_firing_alerts_newest_first_by_rule(served: str) -> None:
    firing = get(f"{served}/alerts")["items"]
    assert {a["alert_id"] for a in firing} == {
        "c-acme:key-contact-departed",
        "c-initech:complaint-spike",
        "c-hooli:complaint-spike",
        "c-hooli:inactivity",
        "c-wayne:customer-dormant",
    }
    fired = [a["fired_at"] for a in firing]
    assert fired == sorted(fired, reverse=True)
    by_rule = get(f"{served}/alerts?status=firing&rule=complaint-spike")["items"]
    assert {a["customer_id"] for a in by_rule} == {"c-initech", "c-hooli"}
    assert len(get(f"{served}/alerts?limit=2")["items"]) == 2


def test_resolved_and_all_alerts_come_from_the_recent_stream(served: str) -> None:
    resolved = get(f"{served}/alerts?status=resolved")["items"]
    assert [a["alert_id"] for a in resolved] == ["c-acme:low-csat"]
    everything = get(f"{served}/alerts?status=all")["items"]
    assert len(everything) == 6
    # the stream is newest first: the last alert written is the first shown
    assert everything[0]["alert_id"] == "c-wayne:customer-dormant"


def test_alerts_of_one_customer(served: str) -> None:
    acme = get(f"{served}/alerts?customer=c-acme&status=all")["items"]
    assert [a["rule_id"] for a in acme] == ["low-csat", "key-contact-departed"]  # newest first
    assert get(f"{served}/alerts?customer=c-acme")["items"][0]["status"] == "firing"
    assert get(f"{served}/alerts?customer=nobody&status=all")["items"] == []


def test_rules_shows_the_loaded_packs_and_fingerprint(served: str) -> None:
    body = get(f"{served}/rules")
    loaded = load_rules([BUILTIN_PACKS])
    assert body["fingerprint"] == loaded.fingerprint.hex()
    assert [r["id"] for r in body["rules"]] == sorted(r.id for r in loaded.rules)
    dormant = next(r for r in body["rules"] if r["id"] == "customer-dormant")
    assert dormant["severity"] == "critical"
    assert body["packs"] == [str(BUILTIN_PACKS)]


def test_tiers_lists_the_tiers_seen(served: str) -> None:
    assert get(f"{served}/tiers")["tiers"] == ["growth", "key", "none", "normal", "strategic"]


def test_probes_and_metrics(served: str) -> None:
    assert get(f"{served}/healthz") == {"status": "ok"}
    ready = get(f"{served}/readyz")
    assert ready == {"ready": True, "checks": {"redis": True, "sink": None}, "reasons": []}
    get(f"{served}/at-risk?limit=0", expect=400)
    metrics = requests.get(f"{served}/metrics", timeout=10).text
    assert 'churnguard_api_requests_total{route="/at-risk",status="400"}' in metrics


def test_openapi_document_is_served(served: str) -> None:
    document = get(f"{served}/openapi.json")
    assert document["openapi"].startswith("3.")
    assert {"/customers/{customer_id}", "/at-risk", "/alerts", "/rules"} <= set(document["paths"])


def test_dashboard_and_its_assets_are_served(served: str) -> None:
    page = requests.get(f"{served}/", timeout=10)
    assert page.status_code == 200
    assert 'src="/static/app.js"' in page.text
    for asset in ("app.js", "style.css"):
        assert requests.get(f"{served}/static/{asset}", timeout=10).status_code == 200
    assert get(f"{served}/static/../serve.py", expect=404)["error"] == "Not Found"


def test_redis_down_gives_503_and_not_ready(tmp_path: Path) -> None:
    redis_server = RedisServer(tmp_path).start()
    serve = ServeProcess({"CHURNGUARD_REDIS_URL": redis_server.url}, tmp_path / "serve.log")
    try:
        serve.start()
        assert get(f"{serve.url}/readyz")["ready"] is True
        redis_server.stop()
        ready = get(f"{serve.url}/readyz", expect=503)
        assert ready["reasons"] == ["redis"]
        for path in ("/at-risk", "/customers/c-acme", "/alerts?status=all", "/tiers"):
            assert get(serve.url + path, expect=503)["error"] == "read model unavailable"
        assert get(f"{serve.url}/healthz") == {"status": "ok"}  # the process is still up
    finally:
        serve.stop()
        redis_server.stop()
    assert "Traceback" not in serve.log()
