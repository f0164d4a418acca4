"""Worker web views: a customer's current snapshot (``/customers/{id}/``), ``/healthz`` (the
process answers) and ``/readyz`` (partitions assigned and recovered; 503 with the reason)."""

from __future__ import annotations

from typing import Any

import faust
from faust.web import Request, Response, View

from agents.health import WorkerProbe
from agents.runtime import Pipeline
from rules.scoring import SCORE_KEYS, Scorer
from streams.features import compute
from streams.partitioning import partition_for
from streams.state import CustomerState
from streams.storage import decode_stored

SHOWN_SCORES = frozenset(SCORE_KEYS) | {"profile"}
"""Keys of ``state.scores`` the view shows (the rest is bookkeeping), by feature name."""


def snapshot(state: CustomerState, scorer: Scorer | None = None) -> dict[str, Any]:
    """JSON-ready view of one customer: account, features and scores at its event time, alerts.

    With the worker's ``scorer``, the scores include the health factors' contributions.
    """
    at = state.evaluated_at or state.last_event_at or 0.0
    scores = {SCORE_KEYS.get(k, k): v for k, v in state.scores.items() if k in SHOWN_SCORES}
    features = compute(state, at)
    if scorer is not None and state.scores:
        scores["contrib"] = scorer.contributions(state.scores, features.__getitem__)
    return {
        "customer_id": state.customer_id,
        "account": state.account,
        "as_of": at,
        "features": features,
        "scores": scores,
        "open_alerts": {
            rule: {
                "alert_id": a.get("id"),
                "status": a["s"],
                "since": a.get("since"),
                "task_id": a.get("task"),
                "task_status": a.get("tstat"),
                "snoozed_until": a.get("snooze"),
            }
            for rule, a in state.alerts.items()
        },
    }


def register_views(app: faust.App, pipeline: Pipeline, probe: WorkerProbe) -> None:
    """Attach the web views to ``app``."""

    @app.page("/healthz")
    class HealthView(View):
        async def get(self, request: Request) -> Response:
            return self.json({"status": "ok"})

    @app.page("/readyz")
    class ReadyView(View):
        async def get(self, request: Request) -> Response:
            readiness = probe.readiness()
            return self.json(readiness.as_json(), status=200 if readiness.ready else 503)

    @app.page("/customers/{customer_id}/")
    class CustomerView(View):
        async def get(self, request: Request, customer_id: str) -> Response:
            partition = partition_for(customer_id, pipeline.settings.partitions)
            buf = pipeline.buffers.get(partition)
            state = buf.states.get(customer_id) if buf else None
            if state is None:
                raw = pipeline.table.get(customer_id.encode())
                if raw is None:
                    return self.json({"error": "unknown customer on this worker"}, status=404)
                state = decode_stored(raw)
            return self.json(snapshot(state, pipeline.engine.scorer))
