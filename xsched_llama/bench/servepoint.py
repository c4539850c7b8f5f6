"""One point of the serve scenario (a rate in one repeat): both classes' figures, the headline ratios, the placed
tail (the server's decode time per token, the interactive gaps by batch state and other prompts), and their spread
over repeats. Pure functions over the measured phases (no I/O)."""
from __future__ import annotations

from typing import Any

from . import stats
from .client import Completion
from .sampler import XschedSampler
from .scenarios import Phase
from .servemetrics import class_metrics, completed, ratio, tpot_ms
from .serveparams import ServeParams
from .tail import Timeline, itl_classes, p99

INTERACTIVE, BATCH = "interactive", "batch"
SPREAD = ("p99_ttft_ratio", "p99_tpot_ratio", "median_ttft_ratio", "p99_itl_ratio", "batch_kept",
          "batch_kept_outside", "mixed_p99_ttft_ms", "mixed_p99_tpot_ms", "solo_p99_ttft_ms", "solo_p99_tpot_ms",
          "mixed_request_goodput", "mixed_goodput_vs_solo_fraction",
          "solo_p99_server_tpot_ms", "mixed_p99_server_tpot_ms", "p99_server_tpot_ratio",
          "solo_p99_tpot_outside_ms", "mixed_p99_tpot_outside_ms", "solo_p99_itl_ms", "mixed_p99_itl_ms",
          "solo_p99_itl_no_prompt_ms", "mixed_p99_itl_no_prompt_ms", "solo_p99_itl_other_prompt_ms",
          "mixed_p99_itl_other_prompt_ms", "mixed_p99_itl_batch_suspended_ms", "mixed_p99_itl_batch_running_ms",
          "mixed_p99_itl_suspended_no_prompt_ms", "mixed_itl_batch_running_share")


def aggregate(m: dict[str, Any]) -> None:
    """aggregate() adds each point's spread over repeats (min/median/max) and the headline figures (the first
    rate's medians) to the serve metrics m (which holds "points", each with its "repeats")."""
    for pt in m["points"]:
        figs = [r["figures"] for r in pt["repeats"]]
        pt["spread"] = {k: _spread([f.get(k) for f in figs]) for k in SPREAD}
    head = m["points"][0]
    for k in SPREAD:
        m[k] = head["spread"][k]["median"]
    m["load"] = head["load"]
    m["slo_p99_met"] = bool(head["repeats"]) and all(r["figures"]["slo_p99_met"] for r in head["repeats"])


def point(sp: ServeParams, solo: Phase, mixed: Phase, b_alone: dict[str, Any]) -> dict[str, Any]:
    """point() computes one (rate, repeat) point: both classes' figures and the headline ratios."""
    s = class_metrics(solo.requests, solo.t0, solo.t1, goodput={"request_goodput": sp.slo})
    rel = {k: v * s[f"p99_{k}_ms"] for k, v in sp.slo_ratio.items() if s.get(f"p99_{k}_ms") is not None}
    inter = [c for c in mixed.requests if c.task == INTERACTIVE]
    batch = [c for c in mixed.requests if c.task == BATCH]
    i_end = max([mixed.t0] + [c.t_end for c in inter if c.t_end is not None])
    mi = class_metrics(inter, mixed.t0, i_end, goodput={"request_goodput": sp.slo, "request_goodput_vs_solo": rel})
    mb = class_metrics(batch, mixed.t0, mixed.t1, closed_loop=True)
    busy = [(c.t_send, c.t_end) for c in inter if c.t_end is not None]
    outside = stats.gaps(busy, mixed.t0, mixed.t1)
    b_times = sorted(t for c in batch for t in c.token_times)
    b_out = stats.rate_in(b_times, outside)
    alone_tps = b_alone.get("output_throughput")
    s["itl_classes"] = itl_classes(solo.requests, _timeline(solo), solo.t0)
    mi["itl_classes"] = itl_classes(inter, _timeline(mixed), mixed.t0)
    sc, mc = s["itl_classes"], mi["itl_classes"]
    for d, ph in ((s, solo), (mi, mixed)):
        if isinstance(ph.timeline, XschedSampler):
            d["xsched_sampler"] = ph.timeline.cost()
    running = (mc["by_batch"].get("running") or {}).get("n", 0)
    f = {
        "solo_p99_ttft_ms": s["p99_ttft_ms"], "solo_p99_tpot_ms": s["p99_tpot_ms"],
        "mixed_p99_ttft_ms": mi["p99_ttft_ms"], "mixed_p99_tpot_ms": mi["p99_tpot_ms"],
        "p99_ttft_ratio": ratio(mi["p99_ttft_ms"], s["p99_ttft_ms"]),
        "p99_tpot_ratio": ratio(mi["p99_tpot_ms"], s["p99_tpot_ms"]),
        "median_ttft_ratio": ratio(mi["median_ttft_ms"], s["median_ttft_ms"]),
        "p99_itl_ratio": ratio(mi["p99_itl_ms"], s["p99_itl_ms"]),
        "mixed_request_goodput": mi["request_goodput"],
        "mixed_goodput_vs_solo_fraction": mi.get("request_goodput_vs_solo_fraction"),
        "batch_kept": ratio(mb["output_throughput"], alone_tps),
        "batch_outside_tps": b_out, "batch_kept_outside": ratio(b_out, alone_tps),
        "outside_s": sum(b - a for a, b in outside),
        "solo_p99_server_tpot_ms": s["p99_server_tpot_ms"], "mixed_p99_server_tpot_ms": mi["p99_server_tpot_ms"],
        "p99_server_tpot_ratio": ratio(mi["p99_server_tpot_ms"], s["p99_server_tpot_ms"]),
        "solo_p99_tpot_outside_ms": s["p99_tpot_outside_ms"], "mixed_p99_tpot_outside_ms": mi["p99_tpot_outside_ms"],
        "solo_p99_itl_ms": s["p99_itl_ms"], "mixed_p99_itl_ms": mi["p99_itl_ms"],
        "solo_p99_itl_no_prompt_ms": p99(sc, "by_prompt", "no_prompt"),
        "mixed_p99_itl_no_prompt_ms": p99(mc, "by_prompt", "no_prompt"),
        "solo_p99_itl_other_prompt_ms": p99(sc, "by_prompt", "other_prompt"),
        "mixed_p99_itl_other_prompt_ms": p99(mc, "by_prompt", "other_prompt"),
        "mixed_p99_itl_batch_suspended_ms": p99(mc, "by_batch", "suspended"),
        "mixed_p99_itl_batch_running_ms": p99(mc, "by_batch", "running"),
        "mixed_p99_itl_suspended_no_prompt_ms": p99(mc, "classes", "suspended/no_prompt"),
        "mixed_itl_batch_running_share": running / mc["n"] if mc["sampled"] and mc["n"] else None,
        "slo_p99_met": all(mi.get(f"p99_{k}_ms") is not None and mi[f"p99_{k}_ms"] <= v for k, v in sp.slo.items()),
        "ttft_ci95_ms": {"solo": list(stats.quantile_ci(_ttfts(solo.requests), 0.99)),
                         "mixed": list(stats.quantile_ci(_ttfts(inter), 0.99))},
        "tpot_ci95_ms": {"solo": list(stats.quantile_ci(_tpots(solo.requests), 0.99)),
                         "mixed": list(stats.quantile_ci(_tpots(inter), 0.99))},
    }
    return {"phases": [solo.name, mixed.name], "interactive_alone": s, "interactive_mixed": mi, "batch_mixed": mb,
            "figures": f}


def _timeline(ph: Phase) -> Timeline | None:
    """_timeline() is the batch instance's state over a phase from its GET /xsched samples (None without)."""
    s = ph.timeline
    if not isinstance(s, XschedSampler) or not s.t:
        return None
    return Timeline(s.t, s.batch, s.batch_units())


def _tpots(reqs: list[Completion]) -> list[float]:
    return [v for c in reqs if completed(c) and (v := tpot_ms(c)) is not None]


def _ttfts(reqs: list[Completion]) -> list[float]:
    return [(c.t_first - c.t_send) * 1e3 for c in reqs if c.t_first is not None and c.error is None
            and not c.cancelled]


def _spread(vals: list[float | None]) -> dict[str, float | None]:
    v = sorted(x for x in vals if isinstance(x, (int, float)) and not isinstance(x, bool))
    if not v:
        return {"min": None, "median": None, "max": None, "n": 0}
    return {"min": v[0], "median": stats.median(v), "max": v[-1], "n": len(v)}
