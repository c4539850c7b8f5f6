"""The serve scenario's workload: the two request classes, the phases, the SLO, and parsing them from flags.

GPU defaults are sized so that one serve run of the synthetic 8B model (four server configurations) takes
about 8 minutes on an H200 (docs/benchmarks.md, "serve"); `ServeParams.for_cpu()` shrinks everything for
the embedded SmolLM2-135M on two cores.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import UsageError

SLO_KEYS = ("ttft", "tpot", "e2el")
MLPERF_SLO = {"ttft": 500.0, "tpot": 30.0}       # MLPerf Inference llama3_1-8b interactive: P99 limits, ms
RATIO_SLO = {"ttft": 1.10, "tpot": 1.05}         # issue 12's targets: P99 with the batch class / solo P99


@dataclass
class ServeParams:
    """ServeParams describe the serve scenario (GPU defaults; `for_cpu()` shrinks them)."""

    rates: list[float] = field(default_factory=list)
    """Interactive arrival rates, requests/s (a sweep when several); empty: use `loads`."""
    loads: list[float] = field(default_factory=lambda: [0.3])
    """Interactive rates as fractions of one instance's measured capacity (used when `rates` is empty)."""
    requests: int = 200
    """Interactive requests per phase (per rate, per repeat)."""
    prompt: tuple[int, int] = (64, 512)
    """Interactive prompt length range, tokens (inclusive, uniform)."""
    output: tuple[int, int] = (32, 128)
    """Interactive output length range, tokens."""
    slots: int = 16
    """Slots of the interactive (high) instance; vanilla gets slots + batch_clients in one context."""
    batch_clients: int = 4
    """Closed-loop batch clients (= slots of the batch instance)."""
    batch_prompt: tuple[int, int] = (2000, 6000)
    """Batch prompt length range, tokens."""
    batch_output: tuple[int, int] = (128, 512)
    """Batch output length range, tokens."""
    batch_seconds: float = 15.0
    """Length of the batch-alone phase, s."""
    repeats: int = 1
    """Repetitions of every point (and of the batch-alone phase); the report gives min/median/max."""
    seed: int = 0
    """Seed of the arrival times and lengths (the same sequence for every configuration)."""
    slo: dict[str, float] = field(default_factory=lambda: dict(MLPERF_SLO))
    """Absolute SLO, ms per request (goodput) and at P99 (slo_p99_met); keys ttft, tpot, e2el."""
    slo_ratio: dict[str, float] = field(default_factory=lambda: dict(RATIO_SLO))
    """SLO relative to the class's solo P99 of the same figure (goodput_vs_solo)."""
    chunk: int = 256
    """-b/-ub of the chunked-prefill vanilla baseline; 0 leaves that baseline out."""
    calibration_rounds: int = 4
    """Requests per client of the capacity calibration (`slots` closed-loop clients)."""
    sample_ms: float = 25.0
    """Interval of the GET /xsched timeline during the interactive phases (patched configurations), ms; 0: off."""

    @classmethod
    def for_cpu(cls) -> "ServeParams":
        """for_cpu() is a workload for the tiny model on two cores without AVX (`GGML_NATIVE=OFF`: ~100 prompt
        tokens/s and ~13 ms per decode step with -t 1 on the development machine), about a minute per configuration."""
        return cls(requests=20, prompt=(4, 16), output=(4, 16), slots=2, batch_clients=1, batch_prompt=(128, 256),
                   batch_output=(4, 16), batch_seconds=4.0, calibration_rounds=3)

    def validate(self) -> None:
        """validate() raises UsageError (one line) for a workload that cannot run."""
        for name in ("prompt", "output", "batch_prompt", "batch_output"):
            lo, hi = getattr(self, name)
            if lo < 1 or hi < lo:
                raise UsageError(f"--serve-{name.replace('_', '-')}: empty length range {lo}-{hi} "
                                 "(expected MIN-MAX with 1 <= MIN <= MAX)")
        for name in ("requests", "slots", "batch_clients", "repeats", "calibration_rounds"):
            if getattr(self, name) < 1:
                raise UsageError(f"--serve-{name.replace('_', '-')} must be at least 1, not {getattr(self, name)}")
        if any(not r > 0 for r in self.rates):
            raise UsageError(f"--serve-rate must be > 0 requests/s, not {', '.join(f'{r:g}' for r in self.rates)}")
        if not self.rates and (not self.loads or any(not f > 0 for f in self.loads)):
            raise UsageError(f"--serve-load must be > 0 (a fraction of one instance's capacity), not "
                             f"{', '.join(f'{f:g}' for f in self.loads) or 'nothing'}")
        if not self.batch_seconds > 0:
            raise UsageError(f"--serve-batch-seconds must be > 0, not {self.batch_seconds:g}")
        if not self.sample_ms >= 0 or self.sample_ms == float("inf"):
            raise UsageError(f"--serve-sample-ms must be >= 0 (0 turns the /xsched timeline off), not {self.sample_ms:g}")
        if 0 < self.sample_ms < 5:
            raise UsageError(f"--serve-sample-ms must be 0 or at least 5 ms (each sample costs a request), not "
                             f"{self.sample_ms:g}")
        if self.chunk < 0:
            raise UsageError(f"--serve-chunk must be >= 0, not {self.chunk}")
        for slo in (self.slo, self.slo_ratio):
            for k, v in slo.items():
                if k not in SLO_KEYS or not v > 0:
                    raise UsageError(f"bad SLO entry {k}:{v:g} (keys {', '.join(SLO_KEYS)}, values > 0)")

    def ctx_per_slot(self) -> int:
        """ctx_per_slot() is the context one slot needs for the longest request of either class (+64, in 256s)."""
        need = max(self.prompt[1] + self.output[1], self.batch_prompt[1] + self.batch_output[1]) + 64
        return int(math.ceil(need / 256) * 256)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def parse_range(value: str, flag: str) -> tuple[int, int]:
    """parse_range() reads "MIN-MAX" (or one number N = N-N) into (MIN, MAX); UsageError otherwise."""
    parts = value.strip().split("-")
    try:
        nums = [int(p) for p in parts]
    except ValueError:
        raise UsageError(f"{flag}: expected MIN-MAX tokens (e.g. 64-512), not {value!r}") from None
    if len(nums) == 1:
        nums = nums * 2
    if len(nums) != 2:
        raise UsageError(f"{flag}: expected MIN-MAX tokens (e.g. 64-512), not {value!r}")
    lo, hi = nums
    if lo < 1 or hi < lo:
        raise UsageError(f"{flag}: empty length range {value!r} (expected MIN-MAX with 1 <= MIN <= MAX)")
    return lo, hi


def parse_floats(value: str, flag: str) -> list[float]:
    """parse_floats() reads a comma list of numbers > 0 (a sweep when several); UsageError otherwise."""
    out: list[float] = []
    for part in value.split(","):
        try:
            v = float(part.strip().rstrip("%")) / (100.0 if part.strip().endswith("%") else 1.0)
        except ValueError:
            raise UsageError(f"{flag}: not a number: {part.strip()!r}") from None
        if not v > 0 or math.isinf(v):
            raise UsageError(f"{flag} must be > 0, not {part.strip()}")
        out.append(v)
    return out


def parse_slo(value: str, flag: str) -> dict[str, float]:
    """parse_slo() reads "ttft:500,tpot:30" (vLLM's --goodput keys, ms or ratios) into a dict."""
    out: dict[str, float] = {}
    for part in value.replace(" ", ",").split(","):
        if not part:
            continue
        key, sep, num = part.partition(":")
        if key not in SLO_KEYS:
            raise UsageError(f"{flag}: unknown SLO key {key!r} (choose from {', '.join(SLO_KEYS)})")
        try:
            v = float(num) if sep else math.nan
        except ValueError:
            v = math.nan
        if not v > 0 or math.isinf(v):
            raise UsageError(f"{flag}: {part!r} needs a value > 0 (KEY:VALUE, e.g. ttft:500)")
        out[key] = v
    if not out:
        raise UsageError(f"{flag}: no SLO given (e.g. ttft:500,tpot:30)")
    return out


def estimate_s(sp: ServeParams, rates: list[float], startup_s: float) -> float:
    """estimate_s() is the expected length of one configuration's serve scenario, s: start-up, warm-up, and per
    repeat two open-loop phases per rate (requests / rate, plus ~2 s to start and drain) and the batch-alone
    phase (plus ~2 s)."""
    per_repeat = sum(2 * (sp.requests / r + 2.0) for r in rates) + sp.batch_seconds + 2.0
    return startup_s + 3.0 + sp.repeats * per_repeat


def describe(sp: ServeParams, rates: list[float] | None) -> str:
    """describe() is a one-line summary of the workload for the log."""
    rate = (", ".join(f"{r:.2f}/s" for r in rates) if rates else
            ", ".join(f"{f:g}x capacity" for f in sp.loads))
    return (f"interactive {sp.requests} requests per phase at {rate}, prompts {sp.prompt[0]}-{sp.prompt[1]}, "
            f"outputs {sp.output[0]}-{sp.output[1]}, {sp.slots} slots; batch {sp.batch_clients} clients, prompts "
            f"{sp.batch_prompt[0]}-{sp.batch_prompt[1]}, outputs {sp.batch_output[0]}-{sp.batch_output[1]}; "
            f"batch alone {sp.batch_seconds:g} s; {sp.repeats} repeat(s)")
