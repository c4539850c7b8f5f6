"""The PNG plot: A's latency per phase per run, and tokens/s over time per task (matplotlib, Agg)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from . import plot_serve, stats
from .errors import BenchError

TIMELINE_SCENARIOS = ("hpf-decode", "hpf-prefill", "harvest", "wrr")
COLOURS = {"A": "tab:red", "B": "tab:blue"}


def plot(report: dict[str, Any], path: Path) -> None:
    """plot() draws the report into a PNG at path; BenchError when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise BenchError("matplotlib is missing: pip install 'xsched-llama[bench]' (or matplotlib)") from None
    runs = report["runs"]
    timelines = [(run, run["scenarios"][s]) for s in TIMELINE_SCENARIOS for run in runs if s in run["scenarios"]]
    ncols = 3
    closed = any(s != "serve" for run in runs for s in run["scenarios"])
    bars = 1 if closed or not plot_serve.serve_runs(report) else 0
    top = bars + (len(timelines) + ncols - 1) // ncols
    nrows = max(1, top + plot_serve.n_rows(report, ncols))
    fig = plt.figure(figsize=(6 * ncols, 3.6 * nrows), constrained_layout=True)
    grid = fig.add_gridspec(nrows, ncols)
    if bars:
        _latency_bars(fig.add_subplot(grid[0, :]), runs)
    for i, (run, scen) in enumerate(timelines):
        _timeline(fig.add_subplot(grid[bars + i // ncols, i % ncols]), run["name"], scen)
    if plot_serve.serve_runs(report):
        plot_serve.draw(fig, grid, top, report, ncols)
    fig.suptitle(f"xsched-llama bench: {Path(report['model']).name}, {report.get('device', '')}")
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)


def _latency_bars(ax: Any, runs: list[dict[str, Any]]) -> None:
    """_latency_bars(): one group per (scenario, phase) with task A, one bar per run."""
    groups: list[str] = []
    values: dict[str, dict[str, float]] = {}
    for run in runs:
        for sname, scen in run["scenarios"].items():
            if sname not in ("hpf-decode", "hpf-prefill", "wrr", "overhead"):
                continue
            for ph in scen["phases"]:
                if ph["a_latency_median_s"] is None:
                    continue
                key = f"{sname}\n{ph['name']}"
                if key not in groups:
                    groups.append(key)
                values.setdefault(run["name"], {})[key] = ph["a_latency_median_s"]
    names = list(values)
    width = 0.8 / max(1, len(names))
    for j, name in enumerate(names):
        xs = [i + j * width for i, g in enumerate(groups) if g in values[name]]
        ys = [values[name][g] for g in groups if g in values[name]]
        bars = ax.bar(xs, ys, width, label=name)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(groups))], groups, fontsize=8)
    ax.set_ylabel("task A latency (s, median)")
    ax.set_title("task A latency per phase and build")
    if names:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no scenario with task A latencies in this report", ha="center", va="center",
                transform=ax.transAxes)


def _timeline(ax: Any, run_name: str, scen: dict[str, Any]) -> None:
    """_timeline(): tokens/s of A and B over the scenario's measured phases."""
    phases = [p for p in scen["phases"] if p["t1"] > p["t0"]]
    if not phases:
        return
    t0 = min(p["t0"] for p in phases)
    t1 = max(p["t1"] for p in phases)
    for task in ("A", "B"):
        reqs = [r for p in phases for r in p["requests"] if r["task"] == task]
        times = sorted(t for r in reqs for t in r["token_times"])
        if times:
            # the rate while the task has a request in flight: the pauses between requests are gaps, not drops
            active = [(r["t_send"], r["t_end"] or r["t_send"]) for r in reqs]
            pts = stats.series(times, t0, t1, bins=min(120, max(20, len(times) // 4)), active=active)
            ax.plot([x - t0 for x, _ in pts], [y for _, y in pts], color=COLOURS[task], label=f"task {task}",
                    linewidth=1)
    for p in phases[1:]:
        ax.axvline(p["t0"] - t0, color="grey", linestyle=":", linewidth=0.8)
    ax.set_title(f"{scen['name']} · {run_name}", fontsize=9)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("tokens/s")
    ax.legend(fontsize=7)
