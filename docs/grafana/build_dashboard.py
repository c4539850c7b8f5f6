"""Writes xsched-llama.json, the Grafana dashboard for the patched llama-server's /metrics (README.md beside it).

Edit the panels here and run `python docs/grafana/build_dashboard.py`; tests/test_grafana_dashboard.py checks that
the JSON is this script's output and that every metric and label it names exists in a running server's /metrics.

Labels as Prometheus stores them with a default scrape config (honor_labels: false): the target's own labels are
`job` and `instance` (host:port of the server), so the server's per-instance label `instance="ID"` of the
`llamacpp:*` families arrives as `exported_instance`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).with_name("xsched-llama.json")
SEL = 'job=~"$job", instance=~"$server"'
Q_SEL = SEL + ', priority=~"$priority"'
Q_BY = "instance, queue, priority"
I_BY = "instance, exported_instance, priority"
Q_LEGEND = "{{queue}} p{{priority}}"
I_LEGEND = "instance {{exported_instance}} p{{priority}}"

_next_id = 0


def _id() -> int:
    global _next_id
    _next_id += 1
    return _next_id


def target(expr: str, legend: str, ref: str = "A", **kw: Any) -> dict[str, Any]:
    return {"datasource": {"type": "prometheus", "uid": "${datasource}"}, "expr": expr, "legendFormat": legend,
            "refId": ref, "range": True, **kw}


def panel(kind: str, title: str, desc: str, targets: list[dict[str, Any]], x: int, y: int, w: int, h: int,
          unit: str = "short", **extra: Any) -> dict[str, Any]:
    p: dict[str, Any] = {
        "id": _id(), "type": kind, "title": title, "description": desc,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"x": x, "y": y, "w": w, "h": h}, "targets": targets,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "table", "placement": "right", "showLegend": True,
                               "calcs": ["lastNotNull", "max"]},
                    "tooltip": {"mode": "multi", "sort": "desc"}},
    }
    for k, v in extra.items():
        if k == "defaults":
            p["fieldConfig"]["defaults"].update(v)
        elif k == "options":
            p["options"].update(v)
        else:
            p[k] = v
    return p


def row(title: str, y: int) -> dict[str, Any]:
    return {"id": _id(), "type": "row", "title": title, "collapsed": False, "panels": [],
            "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}}


def var(name: str, label: str, query: str, include_all: bool = True) -> dict[str, Any]:
    return {"name": name, "label": label, "type": "query", "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "query": {"query": query, "refId": f"{name}-var"}, "definition": query, "refresh": 2,
            "multi": True, "includeAll": include_all, "allValue": ".*", "sort": 3,
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]}}


def quantile(q: float) -> str:
    return (f"histogram_quantile({q}, sum by ({Q_BY}, le) "
            f"(rate(xsched:preemption_latency_seconds_bucket{{{Q_SEL}}}[$__rate_interval])))")


def dashboard() -> dict[str, Any]:
    global _next_id
    _next_id = 0
    state_map = [{"type": "value", "options": {
        "0": {"text": "idle", "color": "transparent", "index": 0},
        "1": {"text": "running", "color": "green", "index": 1},
        "2": {"text": "suspended (idle)", "color": "blue", "index": 2},
        "3": {"text": "suspended with work", "color": "red", "index": 3}}}]
    panels = [
        row("Scheduler (xsched:*): who holds the device", 0),
        panel("stat", "Policy", "xsched:policy: the scheduling policy in use (POST /xsched changes it).",
              [target(f"max by (instance, policy) (xsched:policy{{{SEL}}})", "{{policy}}", instant=True, range=False)],
              0, 1, 4, 5, options={"textMode": "name", "colorMode": "background", "graphMode": "none",
                                   "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}),
        panel("state-timeline", "Queue state",
              "Per XQueue: running (xsched:queue_ready = 1, not suspended), suspended with work (the scheduler "
              "holds it back for a more important queue), suspended while idle, or idle.",
              [target(f"max by ({Q_BY}) (xsched:queue_ready{{{Q_SEL}}}) + 2 * max by ({Q_BY}) "
                      f"(xsched:queue_suspended{{{Q_SEL}}})", Q_LEGEND)],
              4, 1, 20, 5, defaults={"mappings": state_map, "color": {"mode": "thresholds"}, "thresholds": {
                  "mode": "absolute", "steps": [{"color": "transparent", "value": None}]}},
              options={"showValue": "never", "mergeValues": True, "rowHeight": 0.8,
                       "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}}),
        panel("timeseries", "Time suspended (fraction)",
              "rate(xsched:queue_suspended_seconds_total): the share of wall time each queue spent suspended "
              "(1 = parked all the time).",
              [target(f"sum by ({Q_BY}) (rate(xsched:queue_suspended_seconds_total{{{Q_SEL}}}[$__rate_interval]))",
                      Q_LEGEND)], 0, 6, 12, 8, unit="percentunit", defaults={"min": 0}),
        panel("timeseries", "Suspended seconds (total)",
              "xsched:queue_suspended_seconds_total: seconds each queue has been suspended since the server started; "
              "xsched:queue_gate_blocked_seconds_total: seconds its callers waited in the gate.",
              [target(f"sum by ({Q_BY}) (xsched:queue_suspended_seconds_total{{{Q_SEL}}})", "suspended " + Q_LEGEND),
               target(f"sum by ({Q_BY}) (xsched:queue_gate_blocked_seconds_total{{{Q_SEL}}})",
                      "gate-blocked " + Q_LEGEND, "B")], 12, 6, 12, 8, unit="s"),
        panel("timeseries", "Units in flight",
              "xsched:queue_in_flight: units (graph nodes, kernel launches) launched and not yet known complete.",
              [target(f"sum by ({Q_BY}) (xsched:queue_in_flight{{{Q_SEL}}})", Q_LEGEND)], 0, 14, 12, 8,
              defaults={"min": 0, "custom": {"drawStyle": "line", "lineInterpolation": "stepAfter"}}),
        panel("timeseries", "Units admitted per second",
              "rate(xsched:queue_units_total): units the gate let through per second.",
              [target(f"sum by ({Q_BY}) (rate(xsched:queue_units_total{{{Q_SEL}}}[$__rate_interval]))", Q_LEGEND)],
              12, 14, 12, 8, unit="ops", defaults={"min": 0}),
        row("Preemption", 22),
        panel("timeseries", "Preemptions per second",
              "rate(xsched:preemptions_total): suspensions of a queue while it had work in flight.",
              [target(f"sum by ({Q_BY}) (rate(xsched:preemptions_total{{{Q_SEL}}}[$__rate_interval]))", Q_LEGEND)],
              0, 23, 8, 8, unit="ops", defaults={"min": 0}),
        panel("stat", "Preemptions in range",
              "increase(xsched:preemptions_total) over the dashboard's time range.",
              [target(f"sum by ({Q_BY}) (increase(xsched:preemptions_total{{{Q_SEL}}}[$__range]))", Q_LEGEND,
                      instant=True, range=False)],
              8, 23, 4, 8, options={"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                                    "textMode": "value_and_name", "graphMode": "none"}),
        panel("timeseries", "Preemption latency P50 / P99",
              "histogram_quantile over xsched:preemption_latency_seconds: time from a more important queue's Ready "
              "edge until this queue's in-flight work had completed. Buckets end at 20 ms; above it the quantile "
              "reports the last finite bound.",
              [target(quantile(0.5), "P50 " + Q_LEGEND), target(quantile(0.99), "P99 " + Q_LEGEND, "B")],
              12, 23, 12, 8, unit="s", defaults={"min": 0}),
        panel("timeseries", "Preemption latency mean",
              "xsched:preemption_latency_seconds_sum / _count over the rate window.",
              [target(f"sum by ({Q_BY}) (rate(xsched:preemption_latency_seconds_sum{{{Q_SEL}}}[$__rate_interval])) / "
                      f"sum by ({Q_BY}) (rate(xsched:preemption_latency_seconds_count{{{Q_SEL}}}[$__rate_interval]))",
                      Q_LEGEND)], 0, 31, 12, 8, unit="s", defaults={"min": 0}),
        panel("heatmap", "Preemption latency distribution",
              "Measured preemptions per xsched:preemption_latency_seconds bucket, all queues.",
              [target(f"sum by (le) (increase(xsched:preemption_latency_seconds_bucket{{{Q_SEL}}}[$__rate_interval]))",
                      "{{le}}", format="heatmap")], 12, 31, 12, 8, unit="s",
              options={"calculate": False, "yAxis": {"unit": "s"}, "cellGap": 1,
                       "color": {"mode": "scheme", "scheme": "Oranges"}}),
        row("Instances (llamacpp:*, one series per instance)", 39),
        panel("timeseries", "Generated tokens/s",
              "rate(llamacpp:tokens_predicted_total) per instance; dashed: llamacpp:predicted_tokens_seconds, the "
              "server's own average over its finished requests.",
              [target(f"sum by ({I_BY}) (rate(llamacpp:tokens_predicted_total{{{Q_SEL}}}[$__rate_interval]))",
                      I_LEGEND),
               target(f"max by ({I_BY}) (llamacpp:predicted_tokens_seconds{{{Q_SEL}}})", "avg " + I_LEGEND, "B")],
              0, 40, 12, 8, unit="short", defaults={"min": 0}),
        panel("timeseries", "Prompt tokens/s",
              "rate(llamacpp:prompt_tokens_total) per instance; dashed: llamacpp:prompt_tokens_seconds, the server's "
              "own average.",
              [target(f"sum by ({I_BY}) (rate(llamacpp:prompt_tokens_total{{{Q_SEL}}}[$__rate_interval]))", I_LEGEND),
               target(f"max by ({I_BY}) (llamacpp:prompt_tokens_seconds{{{Q_SEL}}})", "avg " + I_LEGEND, "B")],
              12, 40, 12, 8, unit="short", defaults={"min": 0}),
        panel("timeseries", "Requests processing / deferred",
              "llamacpp:requests_processing (in a slot) and llamacpp:requests_deferred (waiting for a slot) per "
              "instance.",
              [target(f"sum by ({I_BY}) (llamacpp:requests_processing{{{Q_SEL}}})", "processing " + I_LEGEND),
               target(f"sum by ({I_BY}) (llamacpp:requests_deferred{{{Q_SEL}}})", "deferred " + I_LEGEND, "B")],
              0, 48, 12, 8, defaults={"min": 0, "custom": {"lineInterpolation": "stepAfter"}}),
        panel("timeseries", "Tokens (totals)",
              "llamacpp:prompt_tokens_total and llamacpp:tokens_predicted_total per instance since the server "
              "started.",
              [target(f"sum by ({I_BY}) (llamacpp:prompt_tokens_total{{{Q_SEL}}})", "prompt " + I_LEGEND),
               target(f"sum by ({I_BY}) (llamacpp:tokens_predicted_total{{{Q_SEL}}})", "predicted " + I_LEGEND, "B")],
              12, 48, 12, 8),
        panel("timeseries", "Busy slots per decode",
              "llamacpp:n_busy_slots_per_decode: average batch occupancy of each instance's llama_decode() calls.",
              [target(f"max by ({I_BY}) (llamacpp:n_busy_slots_per_decode{{{Q_SEL}}})", I_LEGEND)],
              0, 56, 12, 8, defaults={"min": 0}),
        panel("timeseries", "Decode calls per second",
              "rate(llamacpp:n_decode_total) per instance.",
              [target(f"sum by ({I_BY}) (rate(llamacpp:n_decode_total{{{Q_SEL}}}[$__rate_interval]))", I_LEGEND)],
              12, 56, 12, 8, unit="ops", defaults={"min": 0}),
    ]
    for p in panels:  # the server's own averages dashed
        for o in [t for t in p.get("targets", []) if str(t.get("legendFormat", "")).startswith("avg ")]:
            p["fieldConfig"]["overrides"].append({
                "matcher": {"id": "byFrameRefID", "options": o["refId"]},
                "properties": [{"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}}]})
    return {
        "uid": "xsched-llama", "title": "xsched-llama: priority-scheduled llama-server",
        "description": "The scheduler's queues (xsched:*) and the instances (llamacpp:*) of xsched-llama's patched "
                       "llama-server (docs/grafana/README.md).",
        "tags": ["xsched-llama", "llama.cpp"], "editable": True, "graphTooltip": 1, "schemaVersion": 39,
        "version": 1, "refresh": "5s", "time": {"from": "now-15m", "to": "now"}, "timezone": "",
        "links": [], "annotations": {"list": []}, "panels": panels,
        "templating": {"list": [
            {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus",
             "current": {}, "hide": 0, "refresh": 1, "regex": ""},
            var("job", "Job", "label_values(xsched:policy, job)"),
            var("server", "Server", 'label_values(xsched:policy{job=~"$job"}, instance)'),
            var("priority", "Priority", 'label_values(llamacpp:requests_processing{job=~"$job", instance=~"$server"}, '
                                        "priority)"),
        ]},
    }


def render() -> str:
    """render() is the dashboard JSON as written to xsched-llama.json."""
    return json.dumps(dashboard(), indent=2) + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
    print(OUT)
