"""`xsched-llama bench`: vanilla vs patched llama-server, side by side (a thin click layer over runner)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from ..errors import UsageError, XschedLlamaError
from . import report as rpt
from .errors import BenchError
from .runner import run_all
from .scenarios import DEFAULT_SCENARIOS, SCENARIOS, BenchParams
from .servereport import serve_table
from .serveparams import ServeParams, describe, estimate_s, parse_floats, parse_range, parse_slo
from .servers import DEFAULT_CTX, ServerOptions, find_binary, plan

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


def serve_params(base: ServeParams, opts: dict[str, Any]) -> ServeParams:
    """serve_params() applies the --serve-* flags (strings as given) to base; UsageError (one line) on bad input."""
    sp = base
    if opts.get("rate") and opts.get("load"):
        raise UsageError("--serve-rate and --serve-load exclude each other (a rate, or a fraction of capacity)")
    if opts.get("rate"):
        sp.rates, sp.loads = parse_floats(str(opts["rate"]), "--serve-rate"), []
    if opts.get("load"):
        sp.rates, sp.loads = [], parse_floats(str(opts["load"]), "--serve-load")
    for key in ("prompt", "output", "batch_prompt", "batch_output"):
        if opts.get(key) is not None:
            setattr(sp, key, parse_range(str(opts[key]), f"--serve-{key.replace('_', '-')}"))
    if opts.get("slo") is not None:
        sp.slo = parse_slo(str(opts["slo"]), "--serve-slo")
    if opts.get("slo_ratio") is not None:
        sp.slo_ratio = parse_slo(str(opts["slo_ratio"]), "--serve-slo-ratio")
    for key, conv in (("requests", int), ("slots", int), ("batch_clients", int), ("repeats", int), ("seed", int),
                      ("chunk", int), ("batch_seconds", float), ("sample_ms", float)):
        if opts.get(key) is not None:
            setattr(sp, key, conv(opts[key]))
    sp.validate()
    return sp


def _serve_opts(f: Any) -> Any:
    """_serve_opts() adds the --serve-* options (docs/benchmarks.md, "serve")."""
    specs = [
        ("--serve-rate", str, "Interactive arrivals per second (Poisson); a comma list is a sweep."),
        ("--serve-load", str, "Interactive rate as fraction(s) of one instance's measured capacity, e.g. 0.3 or "
                              "30% (default 0.3; a comma list is a sweep)."),
        ("--serve-requests", int, "Interactive requests per phase (GPU 200, CPU 20)."),
        ("--serve-prompt", str, "Interactive prompt tokens MIN-MAX (GPU 64-512, CPU 4-16)."),
        ("--serve-output", str, "Interactive output tokens MIN-MAX (GPU 32-128, CPU 4-16)."),
        ("--serve-slots", int, "Slots of the interactive instance (GPU 16, CPU 2)."),
        ("--serve-batch-clients", int, "Closed-loop batch clients = batch slots (GPU 4, CPU 1)."),
        ("--serve-batch-prompt", str, "Batch prompt tokens MIN-MAX (GPU 2000-6000, CPU 128-256)."),
        ("--serve-batch-output", str, "Batch output tokens MIN-MAX (GPU 128-512, CPU 4-16)."),
        ("--serve-batch-seconds", float, "Length of the batch-alone phase, s (GPU 15, CPU 4)."),
        ("--serve-repeats", int, "Repeats of every point, for the spread (default 1)."),
        ("--serve-seed", int, "Seed of arrivals and lengths (default 0)."),
        ("--serve-slo", str, "Absolute SLO in ms, vLLM --goodput keys (default ttft:500,tpot:30, MLPerf llama3_1-8b "
                             "interactive)."),
        ("--serve-slo-ratio", str, "SLO relative to the solo P99 of the same figure (default ttft:1.1,tpot:1.05)."),
        ("--serve-chunk", int, "-b/-ub of the chunked-prefill vanilla baseline; 0 leaves it out (default 256)."),
        ("--serve-sample-ms", float, "Interval of the GET /xsched timeline of the patched runs' interactive phases, "
                                     "ms; 0 turns it off (default 25)."),
    ]
    for flag, typ, text in reversed(specs):
        f = click.option(flag, "serve_" + flag[len("--serve-"):].replace("-", "_"), type=typ, default=None,
                         help=text)(f)
    return f


@click.command("bench")
@click.option("--model", "-m", type=click.Path(dir_okay=False), default=None,
              help="GGUF model (default: the embedded SmolLM2; on the GPU: `xsched-llama model synth --shape qwen3-8b`).")
@click.option("--shape", default=None,
              help="Use the synthetic model of this shape (qwen3-0.6b, qwen3-1.7b, qwen3-4b, qwen3-8b, tiny), "
                   "synthesized into the cache on first use; excludes --model.")
@click.option("--scenario", "-s", "scenario_names", multiple=True,
              help=f"Scenario to run, repeatable: {', '.join(SCENARIOS)} (default: all but serve).")
@click.option("--builds", default="vanilla,patched", show_default=True, help="Builds to compare, comma-separated.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="bench-out", show_default=True,
              help="Directory for report.json, report.png and the server logs.")
@click.option("--cuda", is_flag=True, help="Use the CUDA builds and the GPU request sizes (default: CPU sizes).")
@click.option("--ngl", type=int, default=None, help="Layers offloaded to the GPU (default: 99 with --cuda, else 0).")
@click.option("--ctx", "ctx_size", type=int, default=None,
              help=f"-c passed to every server (default {DEFAULT_CTX}; serve runs: what their slots need).")
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
@click.option("--server-arg", "server_args", multiple=True, metavar="ARG",
              help="Extra llama-server argument for every run, repeatable (e.g. --server-arg=--cache-ram "
                   "--server-arg=0).")
@click.option("--strict", is_flag=True, help="Exit 1 when a target is missed (targets are the H100's).")
@_serve_opts
def bench(model: str | None, shape: str | None, scenario_names: tuple[str, ...], builds: str, out_dir: str,
          cuda: bool, ngl: int | None, ctx_size: int | None, slots: int, threads: int | None,
          a_tokens: int | None, b_tokens: int | None, b_prompt_tokens: int | None, wrr_tokens: int | None,
          reps: int | None, vanilla_server: str | None, patched_server: str | None, hw_priority_only: bool,
          timeslice_us: int | None, startup_timeout: float, server_args: tuple[str, ...], strict: bool,
          **serve_flags: Any) -> None:
    """Benchmark the patched llama-server against vanilla llama.cpp (HPF, harvest, WRR, overhead, serve)."""
    names: list[str] = []
    for s in scenario_names:
        names += parse_list(s, SCENARIOS, "scenario")
    names = [s for s in SCENARIOS if s in names] if names else list(DEFAULT_SCENARIOS)
    build_list = parse_list(builds, BUILDS, "build")
    params = BenchParams() if cuda else BenchParams.for_cpu()
    params.serve = serve_params(params.serve, {k[len("serve_"):]: v for k, v in serve_flags.items()})
    if ctx_size is not None and ctx_size < 1:
        raise UsageError(f"--ctx must be at least 1, not {ctx_size}")
    for key, val in (("a_tokens", a_tokens), ("b_tokens", b_tokens), ("b_prompt_tokens", b_prompt_tokens),
                     ("wrr_tokens", wrr_tokens), ("reps", reps)):
        if val is not None:
            if val < 1:
                raise UsageError(f"--{key.replace('_', '-')} must be at least 1, not {val}")
            setattr(params, key, val)
    if model and shape:
        raise UsageError("--model and --shape exclude each other")
    if shape:
        from .. import synth
        from ..paths import cache_dir
        synth.check_shape(shape)
    if slots < 1:
        raise UsageError(f"--slots must be at least 1, not {slots}")
    model_path = Path(model) if model else (synth.synth_cached(shape, cache_dir()) if shape else default_model())
    if not model_path.is_file():
        raise UsageError(f"model not found: {model_path}; pass --model or run `xsched-llama model pull smollm2-135m`")
    overrides = {"vanilla": vanilla_server, "patched": patched_server}
    binaries = {b: find_binary(b, cuda, overrides[b]) for b in build_list}
    opts = ServerOptions(model=model_path, ngl=ngl if ngl is not None else (99 if cuda else 0), ctx=ctx_size,
                         slots=slots, threads=threads if threads is not None else (None if cuda else 1),
                         extra=list(server_args))
    if timeslice_us is None and not cuda:
        timeslice_us = CPU_TIMESLICE_US
    specs = plan(build_list, names, binaries, opts, hw_only=hw_priority_only, timeslice_us=timeslice_us,
                 serve=params.serve)
    out = Path(out_dir)

    def log(msg: str) -> None:
        click.echo(msg, err=True)

    if "serve" in names:
        _serve_estimate(params.serve, [s for s in specs if "serve" in s.scenarios], cuda, log)
    doc, _ = run_all(specs, params, out, model_path, cuda, log, startup_timeout=startup_timeout)
    _summary(doc, out)
    if doc["errors"]:
        raise BenchError(f"{len(doc['errors'])} failure(s), report written; first: {doc['errors'][0]}")
    if strict and any(r["pass"] is False for r in doc["targets"]):
        sys.exit(1)


def _serve_estimate(sp: ServeParams, specs: list[Any], cuda: bool, log: Any) -> None:
    """_serve_estimate() prints the serve plan and, when the rate is absolute, the expected run time."""
    log(f"serve: {len(specs)} configuration(s) ({', '.join(s.name for s in specs)}); {describe(sp, sp.rates or None)}")
    startup = 20.0 if cuda else 3.0   # a guess; the per-configuration estimates after the start use the real one
    if sp.rates:
        total = len(specs) * estimate_s(sp, sp.rates, startup)
        log(f"serve: estimated run time {total / 60:.1f} min ({startup:.0f} s start-up assumed per server)")
    else:
        log("serve: the rate is a fraction of capacity; a calibration on the first configuration measures it, "
            "then the estimate follows")


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
    if doc.get("serve"):
        click.echo("\nserve (first rate; commands in report.json \"serve\".\"configs\"):\n" + serve_table(doc["serve"]))
    if doc["targets"]:
        click.echo("\n" + rpt.table(doc["targets"]))
        met = sum(1 for r in doc["targets"] if r["pass"])
        judged = sum(1 for r in doc["targets"] if r["pass"] is not None)
        click.echo(f"\n{met}/{judged} targets met (targets are for the H100; see docs/benchmarks.md)")
    click.echo(f"report: {out / 'report.json'}  plot: {out / 'report.png'}  logs: {out / 'logs'}")


def main(argv: list[str] | None = None) -> None:
    """main() runs `bench` standalone (python -m xsched_llama.bench): one-line errors, exit codes."""
    try:
        bench.main(args=argv, prog_name="xsched-llama bench", standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        click.echo(f"error: {e.format_message()}", err=True)
        sys.exit(e.exit_code)
    except (click.Abort, KeyboardInterrupt):
        click.echo("error: interrupted (the report so far is marked partial)", err=True)
        sys.exit(130)
    except XschedLlamaError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)
