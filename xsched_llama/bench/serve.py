"""The serve scenario: open-loop interactive requests next to closed-loop batch clients, vLLM-style figures.

Per configuration (one server), after a warm-up:
    calibration     (first configuration only, when the rate is a fraction of capacity) `slots` closed-loop
                    interactive clients; capacity = completions per second in the steady window
    per repeat, per rate:
      interactive alone      Poisson arrivals, high priority
      interactive + batch    the same arrival sequence while `batch_clients` closed-loop clients run (low priority)
    per repeat: batch alone  the batch clients for `batch_seconds`
The arrival times and sizes depend only on the seed, so every configuration sees the same requests.
"""
from __future__ import annotations

import random
import threading
from typing import Any

from ..errors import XschedLlamaError
from .client import Completion, complete, get_json, now, tokenize
from .errors import BenchError
from .load import Neighbour
from .openloop import OpenLoop, Planned, draw_lengths, poisson_offsets
from .sampler import XschedSampler
from .scenarios import Context, Phase, ScenarioResult
from .servemetrics import class_metrics
from .servepoint import BATCH, INTERACTIVE, aggregate, point
from .serveparams import ServeParams, describe, estimate_s

__all__ = ["BATCH", "INTERACTIVE", "PartialResult", "Prompts", "aggregate", "point", "serve"]


class PartialResult(BenchError):
    """PartialResult is a scenario failure that carries what was measured before it."""

    def __init__(self, message: str, result: ScenarioResult) -> None:
        super().__init__(message)
        self.result = result


class Prompts:
    """Prompts cuts exact-length token prompts out of one tokenized text (one /tokenize call)."""

    def __init__(self, url: str) -> None:
        self.unit = tokenize(url, "Document. The scheduler keeps interactive requests fast while batch jobs "
                                  "harvest the idle time of the accelerator; every queue is gated before it "
                                  "launches work, and weights share the device. ")
        if not self.unit:
            raise BenchError("the server tokenized the prompt text into no tokens")

    def get(self, n: int, salt: int) -> list[int]:
        """get() is n token ids starting at a salt-dependent offset of the text."""
        k = salt % len(self.unit)
        seq = self.unit[k:] + self.unit * (n // len(self.unit) + 1)
        return seq[:n]


def serve(ctx: Context) -> ScenarioResult:
    """serve() runs the serve scenario; on failure PartialResult carries the phases measured so far."""
    res = ScenarioResult("serve")
    try:
        _serve(ctx, ctx.params.serve, res)
    except XschedLlamaError as e:
        if res.metrics.get("points"):
            aggregate(res.metrics)        # the figures of the points measured before the failure
        res.metrics["partial"] = True
        raise PartialResult(str(e), res) from None
    finally:
        ctx.shared["serve_configs_done"] = int(ctx.shared.get("serve_configs_done", 0)) + 1
    return res


def _serve(ctx: Context, sp: ServeParams, res: ScenarioResult) -> None:
    prompts = Prompts(ctx.url)
    prio_i, prio_b = ctx.priority["high"], ctx.priority["normal"]
    complete(ctx.url, prompts.get(sp.prompt[1], 1), 4, prio_i, task="warm-up")
    complete(ctx.url, prompts.get(sp.batch_prompt[1], 2), 4, prio_b, task="warm-up")
    m: dict[str, Any] = res.metrics
    m["workload"] = sp.to_json()
    loads: list[float | None]
    if sp.rates:
        rates, loads = list(sp.rates), [None] * len(sp.rates)
        cap = ctx.shared.get("serve_capacity")
    else:
        cap = ctx.shared.get("serve_capacity")
        if cap is None:
            cal = _calibrate(ctx, sp, prompts, res)
            cap = ctx.shared["serve_capacity"] = cal["capacity_rps"]
            ctx.shared["serve_capacity_on"] = ctx.name
            m["calibration"] = cal
        rates, loads = [f * float(cap) for f in sp.loads], list(sp.loads)
    m["capacity_rps"] = cap
    m["capacity_measured_on"] = ctx.shared.get("serve_capacity_on")
    m["rates"] = rates
    per_config = estimate_s(sp, rates, ctx.startup_s)
    n_cfg = int(ctx.shared.get("serve_configs", 1))
    done = int(ctx.shared.get("serve_configs_done", 0))
    ctx.log(f"serve: {describe(sp, rates)}; estimated {per_config:.0f} s for this configuration, "
            f"~{per_config * (n_cfg - done) / 60:.1f} min for the {n_cfg - done} configuration(s) left")
    m["points"] = [{"rate": r, "load": f, "repeats": []} for r, f in zip(rates, loads)]
    m["batch_alone"] = []
    for rep in range(sp.repeats):
        mixed_runs = []
        for j, rate in enumerate(rates):
            plan = _plan(sp, prompts, rate, seed=sp.seed * 1000003 + rep * 1009 + j)
            label = f"r{rep + 1} {rate:.3g}/s"
            solo = _open_phase(ctx, f"{label}: interactive alone", plan, prio_i, sp, res)
            mixed = _mixed_phase(ctx, f"{label}: interactive + batch", plan, prio_i, prio_b, sp, prompts, res, rep)
            mixed_runs.append((j, solo, mixed))
        alone = _batch_alone(ctx, f"r{rep + 1}: batch alone", prio_b, sp, prompts, res, rep)
        b_alone = class_metrics(alone.requests, alone.t0, alone.t1, closed_loop=True)
        m["batch_alone"].append({"phase": alone.name, BATCH: b_alone})
        for j, solo, mixed in mixed_runs:
            m["points"][j]["repeats"].append(point(sp, solo, mixed, b_alone))
    aggregate(m)
    ctx.log(f"serve: P99 TTFT {_ms(m['solo_p99_ttft_ms'])} alone, {_ms(m['mixed_p99_ttft_ms'])} with batch "
            f"({_x(m['p99_ttft_ratio'])}); P99 TPOT ratio {_x(m['p99_tpot_ratio'])} (server decode time per token "
            f"{_x(m['p99_server_tpot_ratio'])}); batch keeps "
            f"{_pct(m['batch_kept'])} ({_pct(m['batch_kept_outside'])} outside interactive activity)")
    ctx.log(f"serve: tail: P99 server decode time per token {_ms1(m['solo_p99_server_tpot_ms'])} alone, "
            f"{_ms1(m['mixed_p99_server_tpot_ms'])} with batch; P99 TPOT outside the server "
            f"{_ms1(m['solo_p99_tpot_outside_ms'])} / {_ms1(m['mixed_p99_tpot_outside_ms'])}; P99 ITL alone "
            f"{_ms1(m['solo_p99_itl_no_prompt_ms'])} (no other prompt), {_ms1(m['solo_p99_itl_other_prompt_ms'])} "
            f"(another prompt); with batch {_ms1(m['mixed_p99_itl_no_prompt_ms'])} / "
            f"{_ms1(m['mixed_p99_itl_other_prompt_ms'])}, batch suspended and no other prompt "
            f"{_ms1(m['mixed_p99_itl_suspended_no_prompt_ms'])}, batch running "
            f"{_ms1(m['mixed_p99_itl_batch_running_ms'])} ({_pct(m['mixed_itl_batch_running_share'])} of the gaps)")


def _plan(sp: ServeParams, prompts: Prompts, rate: float, seed: int) -> list[Planned]:
    offs = poisson_offsets(rate, sp.requests, seed)
    lens = draw_lengths(sp.prompt, sp.requests, seed + 1)
    outs = draw_lengths(sp.output, sp.requests, seed + 2)
    return [Planned(o, prompts.get(n, seed + i), k) for i, (o, n, k) in enumerate(zip(offs, lens, outs))]


def _deadline(sp: ServeParams, plan: list[Planned]) -> float:
    span = plan[-1].offset if plan else 0.0
    return 2.0 * span + 60.0


def _settle(ctx: Context, timeout: float = 10.0) -> None:
    """_settle() waits until no slot is processing (GET /slots), so that the cancelled requests of the last phase
    (the server finishes the batch it is in before it sees a disconnect) do not spill into the next one."""
    deadline = now() + timeout
    while now() < deadline and ctx.alive():
        try:
            slots = get_json(ctx.url, "/slots", timeout=5.0)
        except BenchError:
            threading.Event().wait(0.5)      # no /slots (e.g. --no-slots): a fixed pause instead
            return
        if not isinstance(slots, list) or not any(isinstance(s, dict) and s.get("is_processing") for s in slots):
            return
        threading.Event().wait(0.1)


def _sampler(ctx: Context, sp: ServeParams, ph: Phase) -> XschedSampler | None:
    """_sampler() starts the GET /xsched timeline of a phase (patched servers that answer it; sampling on)."""
    if not ctx.patched or sp.sample_ms <= 0:
        return None
    if "serve_sampler_ok" not in ctx.shared or ctx.shared.get("serve_sampler_on") != ctx.name:
        ctx.shared["serve_sampler_ok"] = XschedSampler.probe(ctx.url)
        ctx.shared["serve_sampler_on"] = ctx.name
        if not ctx.shared["serve_sampler_ok"]:
            ctx.log("serve: GET /xsched has no scheduler queues here; no scheduler timeline")
    if not ctx.shared["serve_sampler_ok"]:
        return None
    ph.timeline = XschedSampler(ctx.url, sp.sample_ms / 1e3).start()
    return ph.timeline


def _stop_sampler(ctx: Context, name: str, s: XschedSampler | None) -> None:
    if s is None:
        return
    s.stop()
    c = s.cost()
    ctx.log(f"{name}: /xsched timeline {c['samples']} samples every {c['mean_interval_ms'] or 0:.1f} ms, round trip "
            f"P99 {c['p99_rtt_ms'] or 0:.2f} ms, {c['cpu_ms_per_sample'] or 0:.3f} ms CPU per sample "
            f"({(c['cpu_fraction'] or 0):.2%} of one core)")


def _open_phase(ctx: Context, name: str, plan: list[Planned], prio: int, sp: ServeParams,
                res: ScenarioResult) -> Phase:
    _settle(ctx)
    ph = Phase(name, t0=now())
    res.phases.append(ph)
    loop = OpenLoop(ctx.url, plan, prio, INTERACTIVE, alive=ctx.alive)
    sampler = _sampler(ctx, sp, ph)
    try:
        loop.run(_deadline(sp, plan))
    finally:
        _stop_sampler(ctx, name, sampler)
        ph.requests.extend(loop.results)
        ph.t1 = max([ph.t0] + [c.t_end for c in ph.requests if c.t_end is not None])
    if loop.cut_at_deadline:
        ctx.log(f"{name}: {loop.cut_at_deadline} request(s) still open at the phase deadline were cut "
                "(counted as failed; the server cannot keep up with this rate)")
    return ph


def _batch(ctx: Context, prio: int, sp: ServeParams, prompts: Prompts, seed: int) -> list[Neighbour]:
    """_batch() makes the closed-loop batch clients; client k's request i has seeded sizes."""
    def size(k: int, i: int, what: str) -> int:
        lo, hi = sp.batch_prompt if what == "prompt" else sp.batch_output
        return random.Random(f"{seed}-{k}-{i}-{what}").randint(lo, hi)

    def client(k: int) -> Neighbour:
        def prompt_for(i: int) -> list[int]:
            return prompts.get(size(k, i, "prompt"), 7919 * k + i)

        def n_predict_for(i: int) -> int:
            return size(k, i, "output")
        return Neighbour(ctx.url, prompt_for, 1, prio, task=BATCH, n_predict_for=n_predict_for)

    return [client(k) for k in range(sp.batch_clients)]


def _start(clients: list[Neighbour]) -> None:
    for b in clients:
        b.start()
    for b in clients:
        b.wait_busy(tokens=1)


def _stop(clients: list[Neighbour], ph: Phase) -> None:
    errors = []
    for b in clients:
        try:
            ph.requests.extend(b.stop())
        except BenchError as e:
            ph.requests.extend(b.done)
            errors.append(e)
    if errors:
        raise errors[0]


def _mixed_phase(ctx: Context, name: str, plan: list[Planned], prio_i: int, prio_b: int, sp: ServeParams,
                 prompts: Prompts, res: ScenarioResult, rep: int) -> Phase:
    _settle(ctx)
    ph = Phase(name, t0=now())
    res.phases.append(ph)
    clients = _batch(ctx, prio_b, sp, prompts, seed=sp.seed * 31 + rep)
    loop = OpenLoop(ctx.url, plan, prio_i, INTERACTIVE, alive=ctx.alive)
    sampler = _sampler(ctx, sp, ph)
    try:
        _start(clients)
        ph.t0 = now()
        loop.run(_deadline(sp, plan))
    finally:
        _stop_sampler(ctx, name, sampler)
        ph.requests.extend(loop.results)
        ph.t1 = now()
        _stop(clients, ph)
    if loop.cut_at_deadline:
        ctx.log(f"{name}: {loop.cut_at_deadline} interactive request(s) cut at the phase deadline (counted as failed)")
    return ph


def _batch_alone(ctx: Context, name: str, prio: int, sp: ServeParams, prompts: Prompts, res: ScenarioResult,
                 rep: int) -> Phase:
    _settle(ctx)
    ph = Phase(name, t0=now())
    res.phases.append(ph)
    clients = _batch(ctx, prio, sp, prompts, seed=sp.seed * 31 + rep + 500)
    try:
        _start(clients)
        ph.t0 = now()
        end = ph.t0 + sp.batch_seconds
        while now() < end:
            if not ctx.alive():
                raise BenchError(f"the server exited during {name}")
            threading.Event().wait(min(0.1, max(0.0, end - now())))
        ph.t1 = now()
    finally:
        if ph.t1 <= ph.t0:
            ph.t1 = now()
        _stop(clients, ph)
    return ph


def _calibrate(ctx: Context, sp: ServeParams, prompts: Prompts, res: ScenarioResult) -> dict[str, Any]:
    """_calibrate(): `slots` closed-loop interactive clients, `calibration_rounds` requests each."""
    ph = Phase("calibration: interactive capacity", t0=now())
    res.phases.append(ph)
    errors: list[BaseException] = []
    per: list[list[Completion]] = [[] for _ in range(sp.slots)]

    def client(k: int) -> None:
        try:
            lens = draw_lengths(sp.prompt, sp.calibration_rounds, 17 + 2 * k)
            outs = draw_lengths(sp.output, sp.calibration_rounds, 18 + 2 * k)
            for i, (n, o) in enumerate(zip(lens, outs)):
                per[k].append(complete(ctx.url, prompts.get(n, 100 * k + i), o, ctx.priority["high"],
                                       task=INTERACTIVE))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(sp.slots)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ph.requests = sorted((c for p in per for c in p), key=lambda c: c.t_send)
    ph.t1 = now()
    if errors:
        raise BenchError(f"calibration failed: {errors[0]}")
    w0 = max(p[0].t_end or 0.0 for p in per)     # every client has finished one request
    w1 = min(p[-1].t_end or 0.0 for p in per)    # no client has finished all of its requests yet
    inside = [c for c in ph.requests if c.t_end is not None and w0 < c.t_end <= w1]
    if w1 > w0 and len(inside) >= 2:
        cap, how = len(inside) / (w1 - w0), "steady window"
    else:
        span = max(c.t_end or 0.0 for c in ph.requests) - min(c.t_send for c in ph.requests)
        cap, how = len(ph.requests) / span, "whole calibration"
    ctx.log(f"calibration: one instance with {sp.slots} slots completes {cap:.2f} interactive requests/s ({how})")
    return {"capacity_rps": cap, "method": how, "clients": sp.slots, "requests": len(ph.requests),
            "window_s": max(0.0, w1 - w0)}


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f} ms"


def _ms1(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f} ms"


def _x(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}x"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.0%}"
