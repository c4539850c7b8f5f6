"""Which servers the benchmark starts, with which options, and starting them.

One *run* is one server process (a build plus options plus environment) and the scenarios run
against it. The runs are started one after the other on the same machine:

    vanilla         vanilla llama-server, `-np 2`: the slots share one context (continuous batching)
    patched         patched server, a high and a normal instance, scheduler policy HPF
    patched-hwprio  the same instances with XSCHED_POLICY=NONE: no software gate (see docs/benchmarks.md)
    patched-wrr     the patched server with two instances scheduled by WRR (weights set via POST /xsched)

The serve scenario needs more slots than the closed-loop scenarios, so it gets runs of its own:

    serve-vanilla           vanilla, `-np slots+batch_clients` (the same total slots as the patched server)
    serve-vanilla-chunked   the same with `-b CHUNK -ub CHUNK`: the chunked prefill users try first
    serve-hwprio            patched, `--instances 10:1:slots,0:1:batch_clients`, policy NONE (stream priority only)
    serve-hpf               the same instances, policy HPF
"""
from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .client import get_json, post_json
from .errors import BenchError
from .serveparams import ServeParams

HIGH, NORMAL = 10, 0          # request priorities of task A and task B in the HPF scenarios
WRR_A, WRR_B = 1, 0           # request priorities of the two WRR instances (see docs/benchmarks.md)

HPF_SCENARIOS = ("hpf-decode", "hpf-prefill")
SERVE_RUNS = ("serve-vanilla", "serve-vanilla-chunked", "serve-hwprio", "serve-hpf")
DEFAULT_CTX = 16384           # -c of the closed-loop scenarios' runs


@dataclass
class ServerOptions:
    """ServerOptions are the llama-server options shared by every run (benchmarks.md set-up)."""

    model: Path
    ngl: int = 99
    ctx: int | None = None       # -c; None: DEFAULT_CTX, and for the serve runs what the workload needs
    slots: int = 2
    threads: int | None = None   # -t; None: the server's default
    extra: list[str] = field(default_factory=list)

    def args(self, ctx: int | None = None, slots: int | None = None) -> list[str]:
        """args() is the common argv: model, offload, context, slots, threads (ctx/slots override the fields)."""
        c = ctx if ctx is not None else (self.ctx if self.ctx is not None else DEFAULT_CTX)
        out = ["-m", str(self.model), "-ngl", str(self.ngl), "-c", str(c), "-np", str(slots or self.slots)]
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

    def command(self) -> str:
        """command() is the server's command line as a shell would take it (environment first)."""
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env.items())
        return (env + " " if env else "") + shlex.join([str(self.binary), *self.args])

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "build": self.build, "binary": str(self.binary), "args": self.args,
                "env": self.env, "command": self.command(), "scenarios": self.scenarios, "priority": self.priority,
                "weights": self.weights, "note": self.note}


def instances(*levels: tuple[int, int, int]) -> str:
    """instances() formats the `--instances` value: priority:weight:slots per level."""
    return ",".join(f"{p}:{w}:{n}" for p, w, n in levels)


def plan(builds: list[str], scenarios: list[str], binaries: dict[str, Path], opts: ServerOptions,
         hw_only: bool = True, timeslice_us: int | None = None,
         serve: ServeParams | None = None) -> list[RunSpec]:
    """plan() lists the runs for the chosen builds and scenarios, in the order they are started.

    timeslice_us sets XSCHED_TIMESLICE_US (the WRR quantum) for the WRR run; None keeps the core's default.
    The serve scenario's runs come last (serve_plan()).
    """
    runs = _closed_loop(builds, [s for s in scenarios if s != "serve"], binaries, opts, hw_only, timeslice_us)
    if "serve" in scenarios:
        runs += serve_plan(builds, binaries, opts, serve or ServeParams(), hw_only)
    return runs


def serve_plan(builds: list[str], binaries: dict[str, Path], opts: ServerOptions, sp: ServeParams,
               hw_only: bool = True) -> list[RunSpec]:
    """serve_plan() lists the serve scenario's four configurations (docs/benchmarks.md, "serve").

    Every slot gets the context of the longest request (ServeParams.ctx_per_slot()); vanilla's `-c` is shared
    by all of its slots, the patched server's `-c` is per instance, so each gets ctx_per_slot x its most slots.
    """
    prio = {"high": HIGH, "normal": NORMAL}
    per_slot = sp.ctx_per_slot()
    total = sp.slots + sp.batch_clients
    most = max(sp.slots, sp.batch_clients)
    runs: list[RunSpec] = []
    if "vanilla" in builds:
        v_args = opts.args(ctx=opts.ctx or per_slot * total, slots=total)
        runs.append(RunSpec("serve-vanilla", "vanilla", binaries["vanilla"], v_args, {}, ["serve"], prio,
                            note=f"upstream llama-server, {total} slots in one context (continuous batching)"))
        if sp.chunk:
            runs.append(RunSpec("serve-vanilla-chunked", "vanilla", binaries["vanilla"],
                                v_args + ["-b", str(sp.chunk), "-ub", str(sp.chunk)], {}, ["serve"], prio,
                                note=f"the same with -b {sp.chunk} -ub {sp.chunk}: prompts in chunks of "
                                     f"{sp.chunk} tokens between decode steps (chunked prefill)"))
    if "patched" in builds:
        p_args = opts.args(ctx=opts.ctx or per_slot * most, slots=most)
        inst = ["--instances", instances((HIGH, 1, sp.slots), (NORMAL, 1, sp.batch_clients))]
        if hw_only:
            runs.append(RunSpec("serve-hwprio", "patched", binaries["patched"],
                                p_args + inst + ["--xsched-policy", "NONE"], {"XSCHED_POLICY": "NONE"}, ["serve"],
                                prio, note="patched, interactive and batch instances, policy NONE: CUDA stream "
                                           "priority only"))
        runs.append(RunSpec("serve-hpf", "patched", binaries["patched"], p_args + inst + ["--xsched-policy", "HPF"],
                            {"XSCHED_POLICY": "HPF"}, ["serve"], prio,
                            note="patched, interactive (high) and batch (normal) instances, policy HPF"))
    return runs


def _closed_loop(builds: list[str], scenarios: list[str], binaries: dict[str, Path], opts: ServerOptions,
                 hw_only: bool, timeslice_us: int | None) -> list[RunSpec]:
    prio = {"high": HIGH, "normal": NORMAL, "wrr_a": WRR_A, "wrr_b": WRR_B}
    common = opts.args()
    runs: list[RunSpec] = []
    if not scenarios:
        return runs
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


def find_binary(build: str, cuda: bool, override: str | None) -> Path:
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


def _from_toolkit(build: str, cuda: bool) -> Path | None:
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
