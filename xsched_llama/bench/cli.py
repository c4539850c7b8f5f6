"""`xsched-llama bench`: vanilla vs patched llama-server, side by side (a thin click layer over runner)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

import click

from ..errors import UsageError, XschedLlamaError
from . import report as rpt
from .errors import BenchError
from .runner import run_all
from .scenarios import SCENARIOS, BenchParams
from .servers import ServerOptions, find_binary, plan

BUILDS = ("vanilla", "patched")
CPU_TIMESLICE_US = 30000  # a CPU decode step of the tiny model takes ~10 ms: a turn must hold a few of them


def default_model() -> Path:
    """default_model() is the embedded default model (pulled into the toolkit's cache if missing)."""
    from .. import models
    return models.resolve(None)


def parse_list(value: str, allowed: tuple[str, ...], what: str) -> list[str]:
    """parse_list() splits a comma list and rejects names outside allowed (one-line UsageError)."""
    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        raise UsageError(f"unknown {what} {', '.join(bad) or repr(value)} (choose from {', '.join(allowed)})")
    return items


@click.command("bench")
@click.option("--model", "-m", type=click.Path(dir_okay=False), default=None,
              help="GGUF model (default: the embedded SmolLM2; on the GPU: `xsched-llama model synth --shape qwen3-8b`).")
@click.option("--scenario", "-s", "scenario_names", multiple=True,
              help=f"Scenario to run, repeatable: {', '.join(SCENARIOS)} (default: all).")
@click.option("--builds", default="vanilla,patched", show_default=True, help="Builds to compare, comma-separated.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="bench-out", show_default=True,
              help="Directory for report.json, report.png and the server logs.")
@click.option("--cuda", is_flag=True, help="Use the CUDA builds and the GPU request sizes (default: CPU sizes).")
@click.option("--ngl", type=int, default=None, help="Layers offloaded to the GPU (default: 99 with --cuda, else 0).")
@click.option("--ctx", "ctx_size", type=int, default=16384, show_default=True, help="-c passed to every server.")
@click.option("--slots", type=int, default=2, show_default=True, help="-np of the vanilla server.")
@click.option("--threads", "-t", type=int, default=None, help="-t/-tb per server (default: 1 on CPU, unset with --cuda).")
@click.option("--a-tokens", type=int, default=None, help="Tokens task A generates (GPU 256, CPU 32).")
@click.option("--b-tokens", type=int, default=None, help="Tokens per decoding-neighbour request (GPU 2048, CPU 256).")
@click.option("--b-prompt-tokens", type=int, default=None, help="Prompt of the prefilling neighbour (GPU 6300, CPU 256).")
@click.option("--wrr-tokens", type=int, default=None, help="Tokens of each WRR task (GPU 512, CPU 48).")
@click.option("--reps", type=int, default=None, help="Task A requests per phase, median reported (GPU 3, CPU 2).")
@click.option("--vanilla-server", type=click.Path(dir_okay=False), default=None, help="Vanilla llama-server binary.")
@click.option("--patched-server", type=click.Path(dir_okay=False), default=None, help="Patched llama-server binary.")
@click.option("--hw-priority-only/--no-hw-priority-only", default=True, show_default=True,
              help="Also run the HPF scenarios with XSCHED_POLICY=NONE (no software gate).")
@click.option("--timeslice-us", type=int, default=None,
              help="WRR quantum (XSCHED_TIMESLICE_US) of the WRR run (default: the core's 5000 with --cuda, 30000 on CPU).")
@click.option("--startup-timeout", type=float, default=900.0, show_default=True, help="Seconds a server may load.")
@click.option("--strict", is_flag=True, help="Exit 1 when a target is missed (targets are the H100's).")
def bench(model: Optional[str], scenario_names: tuple[str, ...], builds: str, out_dir: str, cuda: bool,
          ngl: Optional[int], ctx_size: int, slots: int, threads: Optional[int], a_tokens: Optional[int],
          b_tokens: Optional[int], b_prompt_tokens: Optional[int], wrr_tokens: Optional[int], reps: Optional[int],
          vanilla_server: Optional[str], patched_server: Optional[str], hw_priority_only: bool,
          timeslice_us: Optional[int], startup_timeout: float, strict: bool) -> None:
    """Benchmark the patched llama-server against vanilla llama.cpp (HPF, harvest, WRR, overhead)."""
    names: list[str] = []
    for s in scenario_names:
        names += parse_list(s, SCENARIOS, "scenario")
    names = [s for s in SCENARIOS if s in names] if names else list(SCENARIOS)
    build_list = parse_list(builds, BUILDS, "build")
    params = BenchParams() if cuda else BenchParams.for_cpu()
    for key, val in (("a_tokens", a_tokens), ("b_tokens", b_tokens), ("b_prompt_tokens", b_prompt_tokens),
                     ("wrr_tokens", wrr_tokens), ("reps", reps)):
        if val is not None:
            if val < 1:
                raise UsageError(f"--{key.replace('_', '-')} must be at least 1, not {val}")
            setattr(params, key, val)
    model_path = Path(model) if model else default_model()
    if not model_path.is_file():
        raise UsageError(f"model not found: {model_path}; pass --model or run `xsched-llama model pull smollm2-135m`")
    overrides = {"vanilla": vanilla_server, "patched": patched_server}
    binaries = {b: find_binary(b, cuda, overrides[b]) for b in build_list}
    opts = ServerOptions(model=model_path, ngl=ngl if ngl is not None else (99 if cuda else 0), ctx=ctx_size,
                         slots=slots, threads=threads if threads is not None else (None if cuda else 1))
    if timeslice_us is None and not cuda:
        timeslice_us = CPU_TIMESLICE_US
    specs = plan(build_list, names, binaries, opts, hw_only=hw_priority_only, timeslice_us=timeslice_us)
    out = Path(out_dir)

    def log(msg: str) -> None:
        click.echo(msg, err=True)

    doc, _ = run_all(specs, params, out, model_path, cuda, log, startup_timeout=startup_timeout)
    _summary(doc, out)
    if doc["errors"]:
        raise BenchError(f"{len(doc['errors'])} failure(s), report written; first: {doc['errors'][0]}")
    if strict and any(r["pass"] is False for r in doc["targets"]):
        sys.exit(1)


def _summary(doc: dict[str, Any], out: Path) -> None:
    """_summary() prints the latency table, the target table and where the report is."""
    lines = []
    for run in doc["runs"]:
        for name, scen in run["scenarios"].items():
            for ph in scen.get("phases", []):
                if ph.get("a_latency_median_s") is not None:
                    lines.append(f"  {run['name']:<15} {name:<12} {ph['name']:<30} A {ph['a_latency_median_s']:.3f} s")
    click.echo(f"device: {doc['device']}   model: {doc['model']}")
    if lines:
        click.echo("task A latency (median):\n" + "\n".join(lines))
    if doc["targets"]:
        click.echo("\n" + rpt.table(doc["targets"]))
        met = sum(1 for r in doc["targets"] if r["pass"])
        judged = sum(1 for r in doc["targets"] if r["pass"] is not None)
        click.echo(f"\n{met}/{judged} targets met (targets are for the H100; see docs/benchmarks.md)")
    click.echo(f"report: {out / 'report.json'}  plot: {out / 'report.png'}  logs: {out / 'logs'}")


def main(argv: Optional[list[str]] = None) -> None:
    """main() runs `bench` standalone (python -m xsched_llama.bench): one-line errors, exit codes."""
    try:
        bench.main(args=argv, prog_name="xsched-llama bench", standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        click.echo(f"error: {e.format_message()}", err=True)
        sys.exit(e.exit_code)
    except click.Abort:
        click.echo("error: interrupted", err=True)
        sys.exit(130)
    except XschedLlamaError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)
