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
from typing import Any, Callable

from ..errors import XschedLlamaError
from ..server import ServerProcess
from . import report as rpt
from . import scenarios
from .client import get_json, now
from .plot import plot
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
    """run_all() runs every spec; returns the report (also written to out/report.json, .png) and the results."""
    (out / "logs").mkdir(parents=True, exist_ok=True)
    origin = now()
    results: dict[str, dict[str, ScenarioResult]] = {}
    doc: dict[str, Any] = {
        "schema": rpt.SCHEMA, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": sys.argv, "device": device(cuda), "model": str(model), "params": params.to_json(),
        "runs": [], "errors": [],
    }
    for spec in specs:
        log(f"[{spec.name}] starting: {spec.binary} {' '.join(spec.args)}"
            + (f"  ({' '.join(f'{k}={v}' for k, v in spec.env.items())})" if spec.env else ""))
        run_doc: dict[str, Any] = {**spec.to_json(), "log": str(out / "logs" / f"{spec.name}.log"), "scenarios": {}}
        results[spec.name] = {}
        srv = ServerProcess(spec.binary, spec.args, env=spec.env, log_path=out / "logs" / f"{spec.name}.log",
                            startup_timeout=startup_timeout)
        try:
            t_start = now()
            with srv:
                run_doc["startup_s"] = round(now() - t_start, 3)
                ctx = Context(srv.url, params, spec.priority, log=lambda m, n=spec.name: log(f"[{n}] {m}"))
                if spec.weights:
                    ctx.set_weights = lambda wa, wb, u=srv.url, s=spec: set_weights(u, s, wa, wb)
                scenarios.warm_up(ctx)
                for name in spec.scenarios:
                    log(f"[{spec.name}] {name} ...")
                    t0 = now()
                    try:
                        res = scenarios.run(name, ctx)
                    except XschedLlamaError as e:
                        msg = f"{spec.name}/{name}: {e} (server log: {srv.log_path})"
                        log(f"[{spec.name}] {name} FAILED: {e}")
                        doc["errors"].append(msg)
                        run_doc["scenarios"][name] = {"name": name, "error": str(e), "metrics": {}, "phases": []}
                        if srv.returncode is not None:
                            raise
                        continue
                    results[spec.name][name] = res
                    run_doc["scenarios"][name] = rpt.scenario_json(res, origin)
                    run_doc["scenarios"][name]["duration_s"] = round(now() - t0, 3)
                run_doc["xsched"] = _snapshot(srv.url)
        except XschedLlamaError as e:
            msg = f"{spec.name}: {e}"
            if msg not in " ".join(doc["errors"]):
                doc["errors"].append(msg)
            log(f"[{spec.name}] FAILED: {e}")
        doc["runs"].append(run_doc)
    doc["targets"] = rpt.evaluate(results)
    doc["duration_s"] = round(now() - origin, 3)
    try:
        plot(doc, out / "report.png")
    except XschedLlamaError as e:
        doc["errors"].append(str(e))
    rpt.write_json(out / "report.json", doc)
    return doc, results


def _snapshot(url: str) -> Any:
    """_snapshot() is the scheduler snapshot (GET /xsched) of a patched server, None for vanilla."""
    try:
        return get_json(url, "/xsched", timeout=10.0)
    except XschedLlamaError:
        return None
