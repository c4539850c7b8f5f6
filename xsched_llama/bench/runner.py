"""Runs the planned servers one after the other, the scenarios against each, and writes the report.

Output directory: report.json, report.png, logs/<run>.log (each server's own log).
A scenario that fails is recorded in the report with its error and the run goes on, so that one
broken piece does not cost a whole GPU session; the command then exits non-zero.
"""
from __future__ import annotations

import datetime as _dt
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from collections.abc import Callable

from ..errors import XschedLlamaError
from ..server import ServerProcess
from . import preempt, scenarios
from . import report as rpt
from .client import get_json, now
from .plot import plot
from .servereport import serve_summary
from .scenarios import BenchParams, Context, ScenarioResult
from .servers import RunSpec, set_weights


def device(cuda: bool) -> str:
    """device() names the machine: the GPU (nvidia-smi) with --cuda, else the CPU and its cores."""
    if cuda and shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                                 text=True, timeout=30).stdout.strip().splitlines()
            if out:
                return out[0]
        except (OSError, subprocess.SubprocessError):
            pass
    return f"CPU {platform.machine()} ({os.cpu_count()} cores)"


def run_all(specs: list[RunSpec], params: BenchParams, out: Path, model: Path, cuda: bool,
            log: Callable[[str], None], startup_timeout: float = 900.0
            ) -> tuple[dict[str, Any], dict[str, dict[str, ScenarioResult]]]:
    """run_all() runs every spec; returns the report (also written to out/report.json, .png) and the results.

    report.json is rewritten (atomically) after every run, marked `"partial": true` until the last one is done,
    so an interrupted session keeps what it measured. A report with errors stays marked partial.
    """
    (out / "logs").mkdir(parents=True, exist_ok=True)
    origin = now()
    results: dict[str, dict[str, ScenarioResult]] = {}
    figures: dict[str, dict[str, Any]] = {}
    shared: dict[str, Any] = {"serve_configs": sum(1 for s in specs if "serve" in s.scenarios)}
    doc: dict[str, Any] = {
        "schema": rpt.SCHEMA, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": sys.argv, "device": device(cuda), "model": str(model), "params": params.to_json(),
        "partial": True, "runs": [], "errors": [],
    }
    interrupted = False
    try:
        for spec in specs:
            _run_one(spec, params, out, origin, log, startup_timeout, doc, results, figures, shared)
            rpt.write_report(out, doc)
    except KeyboardInterrupt:
        interrupted = True
        doc["errors"].append("interrupted (Ctrl-C): the runs after the last finished one are missing")
    doc["targets"] = rpt.evaluate(results, figures)
    if any("serve" in r["scenarios"] for r in doc["runs"]):
        doc["serve"] = serve_summary(doc["runs"])
    doc["partial"] = bool(doc["errors"])
    doc["duration_s"] = round(now() - origin, 3)
    try:
        plot(doc, out / "report.png")
    except XschedLlamaError as e:
        doc["errors"].append(str(e))
    rpt.write_report(out, doc)
    if interrupted:
        raise KeyboardInterrupt
    return doc, results


def _run_one(spec: RunSpec, params: BenchParams, out: Path, origin: float, log: Callable[[str], None],
             startup_timeout: float, doc: dict[str, Any], results: dict[str, dict[str, ScenarioResult]],
             figures: dict[str, dict[str, Any]], shared: dict[str, Any]) -> None:
    """_run_one() starts one server, runs its scenarios and adds the run to doc (also when it fails)."""
    log(f"[{spec.name}] starting: {spec.command()}")
    run_doc: dict[str, Any] = {**spec.to_json(), "log": str(out / "logs" / f"{spec.name}.log"), "scenarios": {}}
    doc["runs"].append(run_doc)
    results[spec.name] = {}
    srv = ServerProcess(spec.binary, spec.args, env=spec.env, log_path=out / "logs" / f"{spec.name}.log",
                        startup_timeout=startup_timeout)
    patched = spec.build == "patched"
    try:
        t_start = now()
        with srv:
            run_doc["startup_s"] = round(now() - t_start, 3)
            ctx = Context(srv.url, params, spec.priority, log=lambda m, n=spec.name: log(f"[{n}] {m}"),
                          name=spec.name, alive=lambda: srv.returncode is None, shared=shared,
                          startup_s=run_doc["startup_s"], patched=patched)
            if spec.weights:
                ctx.set_weights = lambda wa, wb, u=srv.url, s=spec: set_weights(u, s, wa, wb)
            scenarios.warm_up(ctx)
            first = _snapshot(srv.url) if patched else None
            for name in spec.scenarios:
                log(f"[{spec.name}] {name} ...")
                t0 = now()
                before = _snapshot(srv.url) if patched else None
                try:
                    res = scenarios.run(name, ctx)
                except XschedLlamaError as e:
                    msg = f"{spec.name}/{name}: {e} (server log: {srv.log_path})"
                    log(f"[{spec.name}] {name} FAILED: {e}")
                    doc["errors"].append(msg)
                    part = getattr(e, "result", None)
                    entry = rpt.scenario_json(part, origin) if isinstance(part, ScenarioResult) else \
                        {"name": name, "metrics": {}, "phases": []}
                    run_doc["scenarios"][name] = {**entry, "error": str(e), "partial": True,
                                                  "duration_s": round(now() - t0, 3)}
                    if srv.returncode is not None:
                        raise
                    continue
                if patched:
                    pre = _preemption(before, _snapshot(srv.url))
                    res.metrics["preemption"] = pre
                    res.metrics["preemption_p99_ms"] = preempt.p99_ms(pre)
                results[spec.name][name] = res
                run_doc["scenarios"][name] = rpt.scenario_json(res, origin)
                run_doc["scenarios"][name]["duration_s"] = round(now() - t0, 3)
            run_doc["xsched"] = _snapshot(srv.url)
            if patched:
                run_doc["preemption"] = _preemption(first, run_doc["xsched"])
                figures[spec.name] = {"preemption_p99_ms": preempt.p99_ms(run_doc["preemption"]),
                                      "preemption_measured": bool(run_doc["preemption"].get("measured"))}
    except XschedLlamaError as e:
        msg = f"{spec.name}: {e}"
        if str(e) not in " ".join(doc["errors"]):
            doc["errors"].append(msg)
        log(f"[{spec.name}] FAILED: {e}")


def _preemption(before: Any, after: Any) -> dict[str, Any]:
    """_preemption() is preempt.figures() between two snapshots; a snapshot that cannot be read says why."""
    if after is None:
        return {"measured": False, "status": "no GET /xsched snapshot"}
    try:
        return preempt.figures(before, after)
    except (ValueError, TypeError, KeyError) as e:
        return {"measured": False, "status": f"unreadable preemption histogram: {e}"}


def _snapshot(url: str) -> Any:
    """_snapshot() is the scheduler snapshot (GET /xsched) of a patched server, None for vanilla."""
    try:
        return get_json(url, "/xsched", timeout=10.0)
    except XschedLlamaError:
        return None
