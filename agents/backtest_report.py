"""The backtest's charts (matplotlib, rendered to SVG) and its self-contained HTML report.

matplotlib is imported when the first chart is drawn (half a second): a backtest imports it
in its report writer process (:mod:`agents.report_writer`) while it reads the history.
"""

from __future__ import annotations

import html
import io
from functools import cache
from pathlib import Path
from typing import Any


@cache
def pyplot() -> Any:
    """matplotlib's pyplot, imported and set up for reproducible SVG on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.hashsalt"] = "churnguard"  # stable element ids: same report, same SVG
    plt.rcParams["svg.fonttype"] = "none"
    return plt


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    pyplot().close(fig)
    text = buf.getvalue()
    return text[text.index("<svg") :]


def roc_chart(report: dict[str, Any]) -> str | None:
    """The health score's ROC curve as SVG (None without one)."""
    roc = report.get("health", {}).get("roc") or {}
    points = roc.get("points") or []
    if not points:
        return None
    fig, ax = pyplot().subplots(figsize=(4.6, 4.2))
    ax.plot([p["fpr"] for p in points], [p["tpr"] for p in points], color="#c0392b", lw=2)
    ax.plot([0, 1], [0, 1], color="#999", lw=1, ls="--")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate (recall)")
    ax.set_title(f"health score ROC, AUC {roc['auc']:.3f}")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    return _svg(fig)


def rules_chart(report: dict[str, Any]) -> str | None:
    """Precision and recall of every rule that alerted, as a grouped bar chart (SVG)."""
    rows = [(r, m) for r, m in report["metrics"].items() if m["customers_alerted"]]
    if not rows:
        return None
    fig, ax = pyplot().subplots(figsize=(7.5, 0.5 + 0.55 * len(rows)))
    ys = range(len(rows))
    ax.barh([y + 0.2 for y in ys], [m["precision"] or 0 for _, m in rows], 0.4, label="precision")
    ax.barh([y - 0.2 for y in ys], [m["recall"] or 0 for _, m in rows], 0.4, label="recall")
    base = report["labels"]["churn_rate"]
    if base is not None:
        ax.axvline(base, color="#555", ls=":", lw=1, label=f"churn rate {base:.2f}")
    ax.set_yticks(list(ys), [r for r, _ in rows])
    ax.set_xlim(0, 1)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    ax.set_title("per rule: precision and recall")
    return _svg(fig)


def sweep_chart(sweep: dict[str, Any]) -> str:
    """A swept parameter against precision, recall, lead time and alert load (SVG)."""
    rows = sweep["rows"]
    xs = [r["value"] for r in rows]
    fig, (left, right) = pyplot().subplots(1, 2, figsize=(9, 3.6))
    left.plot(xs, [r["precision"] or 0 for r in rows], marker="o", label="precision")
    left.plot(xs, [r["recall"] or 0 for r in rows], marker="o", label="recall")
    left.plot(xs, [r["f1"] or 0 for r in rows], marker="o", label="F1")
    left.set_ylim(0, 1)
    left.set_xlabel(sweep["param"])
    left.legend(fontsize=8)
    left.set_title(sweep["rule"])
    right.plot(xs, [r["alert_load"] or 0 for r in rows], marker="s", color="#8e44ad")
    right.set_ylabel("alerts / 1,000 customers / month", color="#8e44ad")
    right.set_xlabel(sweep["param"])
    twin = right.twinx()
    twin.plot(xs, [r["lead_time_days_median"] or 0 for r in rows], marker="^", color="#16a085")
    twin.set_ylabel("median lead time (days)", color="#16a085")
    right.set_title("alert load and lead time")
    fig.tight_layout()
    return _svg(fig)


def charts(report: dict[str, Any]) -> dict[str, str]:
    """Every chart the report has, by file stem."""
    out: dict[str, str] = {}
    for name, chart in (("roc", roc_chart(report)), ("rules", rules_chart(report))):
        if chart is not None:
            out[name] = chart
    if report.get("sweep"):
        out["sweep"] = sweep_chart(report["sweep"])
    return out


COLUMNS = (
    ("alerts", "alerts"),
    ("customers_alerted", "customers alerted"),
    ("precision", "precision"),
    ("lift", "lift"),
    ("recall", "recall"),
    ("f1", "F1"),
    ("lead_time_days_median", "lead time median (d)"),
    ("lead_time_days_p90", "lead time p90 (d)"),
    ("alert_load", "alerts /1k cust /month"),
)


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.3f}" if value < 10 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return html.escape(str(value))


def metrics_table(rows: dict[str, dict[str, Any]], first: str = "rule") -> str:
    """An HTML table of per-rule (or per-value) metrics."""
    head = "".join(f"<th>{html.escape(t)}</th>" for _, t in COLUMNS)
    body = "".join(
        f"<tr><td>{html.escape(name)}</td>"
        + "".join(f"<td>{_cell(m.get(k))}</td>" for k, _ in COLUMNS)
        + "</tr>"
        for name, m in rows.items()
    )
    return f"<table><tr><th>{first}</th>{head}</tr>{body}</table>"


def markdown_table(rows: dict[str, dict[str, Any]], first: str = "rule") -> str:
    """The same table in Markdown (for docs)."""
    head = "| " + " | ".join([first, *(t for _, t in COLUMNS)]) + " |"
    rule = "|" + "---|" * (len(COLUMNS) + 1)
    lines = [
        "| " + " | ".join([name, *(_cell(m.get(k)) for k, _ in COLUMNS)]) + " |"
        for name, m in rows.items()
    ]
    return "\n".join([head, rule, *lines])


STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}
table{border-collapse:collapse;margin:1em 0;font-size:14px}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}
th{background:#f3f3f3}
.charts{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}
code{background:#f3f3f3;padding:1px 4px}
"""


def render_html(report: dict[str, Any], svgs: dict[str, str]) -> str:
    """The whole report as one HTML page with the charts inline (no external files)."""
    w, lab, inp = report["window"], report["labels"], report["input"]
    health = report.get("health", {})
    auc = (health.get("roc") or {}).get("auc")
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        "<title>churnguard backtest</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>churnguard backtest</h1>",
        f"<p>{inp['events']:,} events of {inp['customers']:,} customers from "
        f"{html.escape(', '.join(inp['files']))}; {inp['bad_lines']:,} bad line(s) skipped. "
        f"Window {w['from']} to {w['to']} ({w['months']:.1f} months), sweeps every "
        f"{report['engine']['eval_every_s'] / 3600:g} h of event time.</p>",
        f"<p>Labels: {html.escape(lab['source'])}: {lab['churned']:,} of "
        f"{lab['population']:,} customers churned (rate {_cell(lab['churn_rate'])}).</p>",
        metrics_table(report["metrics"]),
        "<p><code>health-score</code>: an episode while the health score is below "
        f"{health.get('below')}; ROC AUC of 100 − health at the window's end: "
        f"{_cell(auc)}.</p>",
        "<div class='charts'>",
        *(svgs[n] for n in ("rules", "roc") if n in svgs),
        "</div>",
    ]
    sweep = report.get("sweep")
    if sweep:
        rows = {_cell(r["value"]): r for r in sweep["rows"]}
        parts += [
            f"<h2>Sweep of {html.escape(sweep['rule'])}.{html.escape(sweep['param'])}</h2>",
            metrics_table(rows, first=sweep["param"]),
            svgs.get("sweep", ""),
        ]
    parts.append(
        "<p>Definitions: docs/backtest.md (precision over customers alerted, recall over "
        "churned customers, lead time from the first alert to churn).</p></body></html>"
    )
    return "\n".join(parts)


def write_report_files(out: Path, report: dict[str, Any], report_json: bytes) -> list[Path]:
    """Write report.json, report.html and each chart as SVG into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    svgs = charts(report)
    written = [out / "report.json", out / "report.html"]
    written[0].write_bytes(report_json)
    written[1].write_text(render_html(report, svgs), encoding="utf-8")
    for name, svg in svgs.items():
        path = out / f"{name}.svg"
        path.write_text(svg, encoding="utf-8")
        written.append(path)
    return written
