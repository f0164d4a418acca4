"""Outputs without personal names (``CHURNGUARD_OUTPUT_NAMES=false``): ids stand in for names.

Alerts, tasks and snapshots carry ids and features; the only names in them come from the
features below, shown in summaries, descriptions, task titles and evidence, and from the
snapshot's ``name`` field. With names off, each is replaced by the id it names.
"""

from __future__ import annotations

from typing import Any

from streams.state import CustomerState

NAME_FEATURES = frozenset({"name", "last_departed_contact"})
"""Features whose value is a person's or an account's name."""


def without_names(values: dict[str, Any], state: CustomerState) -> dict[str, Any]:
    """``values`` (feature name -> value) with every name replaced by the id it names."""
    if NAME_FEATURES.isdisjoint(values):
        return values
    out = dict(values)
    if "name" in out:
        out["name"] = state.customer_id
    if out.get("last_departed_contact"):  # set only while the last departure is recent
        out["last_departed_contact"] = state.departures[-1][1]
    return out
