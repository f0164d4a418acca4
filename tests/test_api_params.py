"""Pure parts of the API: parameter parsing and the read model's values as the API shows them."""

from __future__ import annotations

import pytest
from redis.exceptions import ResponseError

from agents.api_params import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    AlertsQuery,
    AtRiskQuery,
    BadParameter,
    parse_alerts,
    parse_at_risk,
)
from agents.api_queries import alert_order, customer_view, health_history, matches, or_empty


def test_defaults() -> None:
    assert parse_at_risk({}) == AtRiskQuery(tier=None, rule=None, limit=DEFAULT_LIMIT, offset=0)
    assert parse_alerts({}) == AlertsQuery("firing", None, None, DEFAULT_LIMIT)
    assert parse_at_risk({"tier": "", "rule": "", "cursor": ""}).tier is None


def test_valid_values_are_taken() -> None:
    query = parse_at_risk({"tier": "key", "rule": "r", "limit": str(MAX_LIMIT), "cursor": "40"})
    assert query == AtRiskQuery("key", "r", MAX_LIMIT, 40)
    assert parse_alerts({"status": "all", "customer": "c1", "limit": "1"}).status == "all"


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "501"}, "limit"),
        ({"limit": "1.5"}, "limit"),
        ({"limit": "٣"}, "limit"),  # an Arabic-Indic digit: isdigit() but not a limit here
        ({"cursor": "x"}, "cursor"),
        ({"cursor": "100000000"}, "cursor"),
        ({"tier": "t" * 201}, "tier"),
    ],
)
def test_bad_at_risk_parameters(params: dict[str, str], name: str) -> None:
    with pytest.raises(BadParameter) as raised:
        parse_at_risk(params)
    assert raised.value.name == name


@pytest.mark.parametrize("status", ["", "open", "FIRING"])
def test_bad_status(status: str) -> None:
    with pytest.raises(BadParameter, match="status"):
        parse_alerts({"status": status})


def test_customer_view_parses_json_and_numbers_and_survives_bad_values() -> None:
    view = customer_view(
        {
            "customer_id": "c1",
            "health": "42",
            "health_trend_7d": "not a number",
            "at_risk": "1",
            "factors": '{"a": {"points": 1}}',
            "features": "{broken",
            "open_alerts": '"not a list"',
        }
    )
    assert view["health"] == 42
    assert view["health_trend_7d"] is None
    assert view["at_risk"] is True
    assert view["factors"] == {"a": {"points": 1}}
    assert view["features"] is None
    assert view["open_alerts"] == []
    assert view["rfm"] is None


def test_health_history_skips_malformed_members() -> None:
    members = [b"1000:40", "2000:35", b"junk", "3000:", ":5"]
    assert health_history(members) == [
        {"as_of_ms": 1000, "score": 40},
        {"as_of_ms": 2000, "score": 35},
    ]


def test_alert_order_uses_resolution_then_emission_time() -> None:
    fired = {"fired_at": "2026-01-02T00:00:00Z", "emitted_at": "2026-01-02T00:00:00Z"}
    resolved = {
        "fired_at": "2026-01-01T00:00:00Z",
        "resolved_at": "2026-01-03T00:00:00+01:00",
        "emitted_at": "2026-01-03T00:00:00Z",
    }
    broken = {"fired_at": "yesterday"}
    ordered = sorted([fired, broken, resolved], key=alert_order, reverse=True)
    assert ordered == [resolved, fired, broken]


def test_matches_status_and_rule() -> None:
    alert = {"status": "resolved", "rule_id": "r1"}
    assert matches(alert, "all", None)
    assert matches(alert, "resolved", "r1")
    assert not matches(alert, "firing", None)
    assert not matches(alert, "all", "r2")


def test_wrong_type_replies_read_as_empty() -> None:
    assert or_empty(ResponseError("WRONGTYPE"), []) == []
    assert or_empty({"a": 1}, []) == {"a": 1}
