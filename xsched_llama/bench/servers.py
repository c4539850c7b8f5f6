"""Which servers the benchmark starts, with which options, and starting them.

One *run* is one server process (a build plus options plus environment) and the scenarios run
against it. The runs are started one after the other on the same machine:

    vanilla         vanilla llama-server, `-np 2`: the slots share one context (continuous batching)
    patched         patched server, a high and a normal instance, scheduler policy HPF
    patched-hwprio  the same instances with XSCHED_POLICY=NONE: no software gate (see docs/benchmarks.md)
    patched-wrr     the patched server with two instances scheduled by WRR (weights set via POST /xsched)
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .client import get_json, post_json
from .errors import BenchError

HIGH, NORMAL = 10, 0          # request priorities of task A and task B in the HPF scenarios
WRR_A, WRR_B = 1, 0           # request priorities of the two WRR instances (see docs/benchmarks.md)

HPF_SCENARIOS = ("hpf-decode", "hpf-prefill")


@dataclass
class ServerOptions:
    """ServerOptions are the llama-server options shared by every run (benchmarks.md set-up)."""

    model: Path
    ngl: int = 99
    ctx: int = 16384
    slots: int = 2
    threads: Optional[int] = None   # -t; None: the server's default
    extra: list[str] = field(default_factory=list)

    def args(self) -> list[str]:
        """args() is the common argv: model, offload, context, slots, threads."""
        out = ["-m", str(self.model), "-ngl", str(self.ngl), "-c", str(self.ctx), "-np", str(self.slots)]
        if self.threads:
            out += ["-t", str(self.threads), "-tb", str(self.threads)]
        return out + list(self.extra)


@dataclass
class RunSpec:
    """RunSpec is one server to start and the scenarios to run against it."""

    name: str
    build: str                     # "vanilla" or "patched"
    binary: Path
    args: list[str]
    env: dict[str, str]
    scenarios: list[str]
    priority: dict[str, int]       # role -> request priority (see scenarios.Context)
    weights: bool = False          # WRR weights can be set through POST /xsched
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "build": self.build, "binary": str(self.binary), "args": self.args,
                "env": self.env, "scenarios": self.scenarios, "priority": self.priority, "weights": self.weights,
                "note": self.note}


def instances(*levels: tuple[int, int, int]) -> str:
    """instances() formats the `--instances` value: priority:weight:slots per level."""
    return ",".join(f"{p}:{w}:{n}" for p, w, n in levels)


def plan(builds: list[str], scenarios: list[str], binaries: dict[str, Path], opts: ServerOptions,
         hw_only: bool = True, timeslice_us: Optional[int] = None) -> list[RunSpec]:
    """plan() lists the runs for the chosen builds and scenarios, in the order they are started.

    timeslice_us sets XSCHED_TIMESLICE_US (the WRR quantum) for the WRR run; None keeps the core's default.
    """
    prio = {"high": HIGH, "normal": NORMAL, "wrr_a": WRR_A, "wrr_b": WRR_B}
    common = opts.args()
    runs: list[RunSpec] = []
    if "vanilla" in builds:
        runs.append(RunSpec("vanilla", "vanilla", binaries["vanilla"], common, {}, list(scenarios), prio,
                            note="upstream llama-server; `priority` is ignored, all slots share one context"))
    if "patched" not in builds:
        return runs
    hpf_inst = ["--instances", instances((HIGH, 1, 1), (NORMAL, 1, 1))]
    hpf_like = [s for s in scenarios if s != "wrr"]
    if hpf_like:
        runs.append(RunSpec("patched", "patched", binaries["patched"], common + hpf_inst + ["--xsched-policy", "HPF"],
                            {"XSCHED_POLICY": "HPF"}, hpf_like, prio,
                            note="two instances (high, normal), scheduler policy HPF"))
    hpf = [s for s in scenarios if s in HPF_SCENARIOS]
    if hw_only and hpf:
        runs.append(RunSpec("patched-hwprio", "patched", binaries["patched"],
                            common + hpf_inst + ["--xsched-policy", "NONE"], {"XSCHED_POLICY": "NONE"}, hpf, prio,
                            note="same instances, policy NONE: queues never gated, stream priorities kept"))
    if "wrr" in scenarios:
        wrr_inst = ["--instances", instances((WRR_A, 1, 1), (WRR_B, 1, 1))]
        env = {"XSCHED_POLICY": "WRR"}
        if timeslice_us:
            env["XSCHED_TIMESLICE_US"] = str(timeslice_us)
        runs.append(RunSpec("patched-wrr", "patched", binaries["patched"], common + wrr_inst + ["--xsched-policy", "WRR"],
                            env, ["wrr"], prio, weights=True,
                            note="two instances scheduled by WRR; weights set at run time via POST /xsched"))
    return runs


def set_weights(url: str, spec: RunSpec, wa: int, wb: int) -> None:
    """set_weights() gives the instances of task A and task B the WRR weights wa and wb (POST /xsched)."""
    snap = get_json(url, "/xsched")
    ids = {int(i["priority"]): int(i["id"]) for i in snap.get("instances", [])}
    for role, weight in (("wrr_a", wa), ("wrr_b", wb)):
        prio = spec.priority[role]
        if prio not in ids:
            raise BenchError(f"the server has no instance of priority {prio} (GET /xsched lists {sorted(ids)})")
        post_json(url, "/xsched", {"instance": ids[prio], "weight": weight}, timeout=30.0)


def find_binary(build: str, cuda: bool, override: Optional[str]) -> Path:
    """find_binary() returns the llama-server of a build: the flag, else the toolkit's build cache."""
    if override:
        path = Path(override)
        if not path.is_file() or not os.access(path, os.X_OK):
            raise BenchError(f"{build} llama-server not found: {path}")
        return path
    found = _from_toolkit(build, cuda)
    if found is None or not found.is_file():
        flag = " --vanilla" if build == "vanilla" else ""
        raise BenchError(f"no {build} {'CUDA' if cuda else 'CPU'} build of llama-server found; run "
                         f"`xsched-llama build{' --cuda' if cuda else ''}{flag}` or pass --{build}-server PATH")
    return found


def _from_toolkit(build: str, cuda: bool) -> Optional[Path]:
    """_from_toolkit() finds the toolkit's cached build (`xsched-llama build [--cuda] [--vanilla]`).

    CUDA builds are named per architecture (patched-cuda90); the newest one is taken.
    """
    from .. import build as tk
    from ..paths import cache_dir
    if not cuda:
        return tk.find_binary(tk.BuildOptions(vanilla=(build == "vanilla")))
    found = sorted((cache_dir() / "builds").glob(f"{build}-cuda*/build/bin/llama-server"),
                   key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None
