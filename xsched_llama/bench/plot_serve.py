"""The serve scenario's panels of report.png: latency CDFs per class and configuration, tokens/s over time,
and the rate sweep (drawn from the report's JSON)."""
from __future__ import annotations

from typing import Any

from . import stats

CLASSES = ("interactive", "batch")


def serve_runs(report: dict[str, Any]) -> list[dict[str, Any]]:
    """serve_runs() are the runs of a report that ran the serve scenario."""
    return [r for r in report["runs"] if "serve" in r.get("scenarios", {})]


def n_rows(report: dict[str, Any], ncols: int) -> int:
    """n_rows() is how many grid rows the serve panels take (0 without a serve run)."""
    runs = serve_runs(report)
    if not runs:
        return 0
    return 1 + _middle_rows(runs, ncols) + (1 if _sweep_wanted(runs) else 0) + _state_rows(runs, ncols)


def _mixed_with_timeline(run: dict[str, Any]) -> dict[str, Any] | None:
    """_mixed_with_timeline() is the run's first interactive + batch phase that has a GET /xsched timeline."""
    for ph in run["scenarios"]["serve"].get("phases", []):
        if ph["name"].endswith("interactive + batch") and (ph.get("xsched_timeline") or {}).get("t"):
            return ph
    return None


def _state_rows(runs: list[dict[str, Any]], ncols: int) -> int:
    n = sum(1 for r in runs if _mixed_with_timeline(r) is not None)
    return (n + ncols - 1) // ncols


def _middle_rows(runs: list[dict[str, Any]], ncols: int) -> int:
    return (1 + len(runs) + ncols - 1) // ncols     # the batch TPOT CDF, then one timeline per run


def _sweep_wanted(runs: list[dict[str, Any]]) -> bool:
    return any(len(r["scenarios"]["serve"].get("metrics", {}).get("rates") or []) > 1 for r in runs)


def _values(phases: list[dict[str, Any]], task: str, what: str) -> list[float]:
    out = []
    for ph in phases:
        for r in ph["requests"]:
            if r["task"] != task or r.get("error") or r.get("cancelled") or r.get("t_first") is None:
                continue
            ttft = (r["t_first"] - r["t_send"]) * 1e3
            if what == "ttft":
                out.append(ttft)
            elif r["tokens"] > 1 and r.get("t_end") is not None:
                out.append((r["t_end"] - r["t_first"]) * 1e3 / (r["tokens"] - 1))
    return sorted(out)


def _cdf(ax: Any, runs: list[dict[str, Any]], task: str, what: str) -> None:
    colours = {}
    for i, run in enumerate(runs):
        phases = run["scenarios"]["serve"]["phases"]
        colours[run["name"]] = f"C{i}"
        for kind, style in (("interactive + batch", "-"), ("interactive alone", ":"), ("batch alone", ":")):
            sel = [p for p in phases if p["name"].endswith(kind)]
            if task == "interactive" and kind == "batch alone" or task == "batch" and kind == "interactive alone":
                continue
            vals = _values(sel, task, what)
            if vals:
                ys = [(k + 1) / len(vals) for k in range(len(vals))]
                label = f"{run['name'].removeprefix('serve-')} ({'alone' if style == ':' else 'mixed'})"
                ax.step(vals, ys, where="post", color=colours[run["name"]], linestyle=style, linewidth=1, label=label)
    ax.set_xscale("log")
    from matplotlib.ticker import NullFormatter
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(f"{what.upper()} (ms, log)")
    ax.set_ylabel("fraction of requests")
    ax.set_title(f"{task} {what.upper()} CDF (dotted: class alone)", fontsize=9)
    ax.axhline(0.99, color="grey", linewidth=0.5, linestyle="--")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=6)


def _timeline(ax: Any, run: dict[str, Any]) -> None:
    phases = [p for p in run["scenarios"]["serve"]["phases"] if p["t1"] > p["t0"]]
    if not phases:
        return
    t0, t1 = min(p["t0"] for p in phases), max(p["t1"] for p in phases)
    for task, colour in zip(CLASSES, ("tab:red", "tab:blue")):
        times = sorted(t for p in phases for r in p["requests"] if r["task"] == task for t in r["token_times"])
        if times:
            pts = stats.series(times, t0, t1, bins=min(200, max(20, int((t1 - t0) / 0.5))))
            ax.plot([x - t0 for x, _ in pts], [y for _, y in pts], color=colour, label=task, linewidth=0.8)
    for p in phases:
        ax.axvline(p["t0"] - t0, color="grey", linestyle=":", linewidth=0.6)
    ax.set_title(f"serve · {run['name']} (output tok/s; dotted: phase starts)", fontsize=9)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("tokens/s")
    ax.legend(fontsize=7)


def _sweep(ax: Any, runs: list[dict[str, Any]], key: str, label: str) -> None:
    for i, run in enumerate(runs):
        pts = run["scenarios"]["serve"].get("metrics", {}).get("points") or []
        xy = [(p["rate"], p["spread"][key]["median"]) for p in pts
              if p.get("spread", {}).get(key, {}).get("median") is not None]
        if xy:
            ax.plot([x for x, _ in xy], [y for _, y in xy], marker="o", color=f"C{i}",
                    label=run["name"].removeprefix("serve-"))
    ax.set_xlabel("interactive rate (req/s)")
    ax.set_ylabel(label)
    ax.set_title(f"rate sweep: {label}", fontsize=9)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def _spans(t: list[float], states: list[str]) -> list[tuple[float, float, str]]:
    """_spans() merges consecutive samples of one state into (start, end, state), each sample holding until the
    next one."""
    out: list[tuple[float, float, str]] = []
    for i, st in enumerate(states[:-1]):
        if out and out[-1][2] == st:
            out[-1] = (out[-1][0], t[i + 1], st)
        else:
            out.append((t[i], t[i + 1], st))
    return out


def _states(ax: Any, run: dict[str, Any], ph: dict[str, Any]) -> None:
    """_states(): the interactive inter-token gaps over the mixed phase (dots), over the batch instance's state
    from GET /xsched (shaded: running red, suspended blue)."""
    tl = ph["xsched_timeline"]
    t0 = ph["t0"]
    for a, b, st in _spans(tl["t"], tl["batch"]):
        if st in ("running", "suspended"):
            ax.axvspan(a - t0, b - t0, color="tab:red" if st == "running" else "tab:blue",
                       alpha=0.18 if st == "running" else 0.07, linewidth=0)
    xs, ys = [], []
    for r in ph["requests"]:
        if r["task"] != "interactive" or r.get("error") or r.get("cancelled"):
            continue
        tt = r["token_times"]
        for a, b in zip(tt, tt[1:]):
            if b > a:
                xs.append(b - t0)
                ys.append((b - a) * 1e3)
    if xs:
        ax.scatter(xs, ys, s=2, color="black", label="interactive ITL")
        ax.set_yscale("log")
        ax.legend(fontsize=7, loc="upper right")
    ax.set_xlabel("time in the interactive + batch phase (s)")
    ax.set_ylabel("ITL (ms, log)")
    ax.set_title(f"serve · {run['name']}: interactive ITL over the batch instance's state "
                 "(red: running, blue: suspended)", fontsize=9)


def draw(fig: Any, grid: Any, row0: int, report: dict[str, Any], ncols: int) -> None:
    """draw() fills the serve rows of the grid from row0 on (n_rows() of them)."""
    runs = serve_runs(report)
    _cdf(fig.add_subplot(grid[row0, 0]), runs, "interactive", "ttft")
    _cdf(fig.add_subplot(grid[row0, 1]), runs, "interactive", "tpot")
    _cdf(fig.add_subplot(grid[row0, 2]), runs, "batch", "ttft")
    _cdf(fig.add_subplot(grid[row0 + 1, 0]), runs, "batch", "tpot")
    for i, run in enumerate(runs):
        k = i + 1
        _timeline(fig.add_subplot(grid[row0 + 1 + k // ncols, k % ncols]), run)
    last = row0 + 1 + _middle_rows(runs, ncols)
    if _sweep_wanted(runs):
        _sweep(fig.add_subplot(grid[last, 0]), runs, "mixed_p99_ttft_ms", "interactive P99 TTFT with batch (ms)")
        _sweep(fig.add_subplot(grid[last, 1]), runs, "mixed_p99_tpot_ms", "interactive P99 TPOT with batch (ms)")
        _sweep(fig.add_subplot(grid[last, 2]), runs, "batch_kept", "batch tok/s with interactive / alone")
        last += 1
    sampled = [(r, ph) for r in runs if (ph := _mixed_with_timeline(r)) is not None]
    for i, (run, ph) in enumerate(sampled):
        _states(fig.add_subplot(grid[last + i // ncols, i % ncols]), run, ph)
