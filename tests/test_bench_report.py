"""The benchmark's report: targets, pass/fail, JSON, the text table, the PNG plot and the run plan."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from xsched_llama.bench import report, servers
from xsched_llama.bench.client import Completion
from xsched_llama.bench.plot import plot
from xsched_llama.bench.scenarios import BenchParams, Phase, ScenarioResult


def completion(task: str, t_send: float, rate: float, n: int, prio: int = 0) -> Completion:
    """completion() is a request that generated n tokens at `rate` tok/s, starting 0.05 s after t_send."""
    times = [t_send + 0.05 + i / rate for i in range(n)]
    return Completion(task=task, priority=prio, n_predict=n, prompt_tokens=4, t_send=t_send, t_first=times[0],
                      t_end=times[-1], tokens=n, token_times=times)


def hpf(name: str, alone_rate: float, with_rate: float) -> ScenarioResult:
    alone = Phase("A alone", [completion("A", 0.0, alone_rate, 64, 10)], 0.0, 1.0)
    a = completion("A", 2.0, with_rate, 64, 10)
    b = completion("B", 1.5, 50.0, 200)
    with_b = Phase("A with B", [a, b], 1.5, 6.0)
    slowdown = a.latency / alone.requests[0].latency
    return ScenarioResult(name, [alone, with_b], {"slowdown": slowdown})


RESULTS = {
    "vanilla": {"hpf-decode": hpf("hpf-decode", 100.0, 60.0),
                "overhead": ScenarioResult("overhead", [], {"decode_tps_normal": 100.0, "decode_tps_high": 100.0,
                                                             "prefill_tps_normal": 1000.0,
                                                             "prefill_tps_high": 1000.0})},
    "patched": {"hpf-decode": hpf("hpf-decode", 100.0, 98.0),
                "overhead": ScenarioResult("overhead", [], {"decode_tps_normal": 92.0, "decode_tps_high": 99.0,
                                                             "prefill_tps_normal": 990.0,
                                                             "prefill_tps_high": 1000.0})},
    "patched-hwprio": {"hpf-decode": hpf("hpf-decode", 100.0, 80.0)},
}


def rows_by_id() -> dict[str, dict]:
    return {r["id"]: r for r in report.evaluate(RESULTS)}


def test_targets_pass_and_fail() -> None:
    rows = rows_by_id()
    assert set(rows) == {"hpf-decode", "overhead-decode-high", "overhead-decode-normal", "overhead-prefill-high",
                         "overhead-prefill-normal"}    # only scenarios that ran
    dec = rows["hpf-decode"]
    assert dec["vanilla"] == pytest.approx((0.05 + 63 / 60) / (0.05 + 63 / 100))
    assert dec["patched"] == pytest.approx((0.05 + 63 / 98) / (0.05 + 63 / 100))
    assert dec["pass"] is True and dec["hw_priority_only_pass"] is False
    assert dec["target"] == "≤ 1.05" and dec["h100_vanilla_reference"] == 1.16
    assert rows["overhead-decode-normal"]["patched"] == pytest.approx(0.92)
    assert rows["overhead-decode-normal"]["pass"] is False
    assert rows["overhead-decode-high"]["pass"] is True
    assert rows["overhead-prefill-normal"]["patched"] == pytest.approx(0.99)


def test_target_bounds() -> None:
    t = {x.id: x for x in report.TARGETS}
    assert t["wrr-3:1"].text() == "3.0 ± 0.3"
    assert t["wrr-3:1"].check(2.75) and not t["wrr-3:1"].check(3.4)
    assert t["wrr-1:1"].text() == "≤ 5%" and t["wrr-1:1"].check(0.05) and not t["wrr-1:1"].check(0.051)
    assert t["harvest"].text() == "≥ 0.95" and t["harvest"].check(None) is None


def test_table_lists_every_row() -> None:
    text = report.table(report.evaluate(RESULTS))
    lines = text.splitlines()
    assert lines[0].split()[:2] == ["measure", "vanilla"]
    assert len(lines) == 2 + 5
    assert any("A with B decoding" in line and line.rstrip().endswith("pass") for line in lines)
    assert any("normal instance" in line and "FAIL" in line for line in lines)


def test_json_and_plot(tmp_path: Path) -> None:
    runs = [{"name": name, "scenarios": {s: report.scenario_json(r, 0.0) for s, r in scen.items()}}
            for name, scen in RESULTS.items()]
    doc = {"schema": report.SCHEMA, "model": "/m/model.gguf", "device": "test", "runs": runs,
           "targets": report.evaluate(RESULTS), "params": BenchParams.for_cpu().to_json()}
    report.write_json(tmp_path / "report.json", doc)
    back = json.loads((tmp_path / "report.json").read_text())
    assert back["targets"][0]["id"] == "hpf-decode"
    phase = back["runs"][0]["scenarios"]["hpf-decode"]["phases"][1]
    assert phase["name"] == "A with B" and len(phase["requests"]) == 2
    assert len(phase["requests"][1]["token_times"]) == 200
    assert not list(tmp_path.glob("*.tmp"))
    plot(back, tmp_path / "report.png")
    data = (tmp_path / "report.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image
    img = matplotlib.image.imread(tmp_path / "report.png")
    assert img.shape[0] > 200 and img.shape[1] > 400


@pytest.mark.parametrize("only", [("overhead",), ("harvest",)])
def test_plot_of_a_subset(tmp_path: Path, only: tuple[str, ...]) -> None:
    """A report of some scenarios only (e.g. `--scenario overhead`) plots without matplotlib warnings."""
    runs = [{"name": name, "scenarios": {s: report.scenario_json(r, 0.0) for s, r in scen.items() if s in only}}
            for name, scen in RESULTS.items()]
    doc = {"schema": report.SCHEMA, "model": "/m/model.gguf", "device": "test", "runs": runs, "targets": []}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plot(doc, tmp_path / "report.png")
    assert (tmp_path / "report.png").read_bytes()[:4] == b"\x89PNG"


def test_plan_runs(tmp_path: Path) -> None:
    binaries = {"vanilla": tmp_path / "v", "patched": tmp_path / "p"}
    opts = servers.ServerOptions(model=tmp_path / "m.gguf", ngl=99, ctx=16384, slots=2)
    runs = servers.plan(["vanilla", "patched"], ["hpf-decode", "hpf-prefill", "wrr", "overhead"], binaries, opts)
    by = {r.name: r for r in runs}
    assert [r.name for r in runs] == ["vanilla", "patched", "patched-hwprio", "patched-wrr"]
    assert by["vanilla"].args == ["-m", str(tmp_path / "m.gguf"), "-ngl", "99", "-c", "16384", "-np", "2"]
    assert by["patched"].args[-4:] == ["--instances", "10:1:1,0:1:1", "--xsched-policy", "HPF"]
    assert by["patched"].scenarios == ["hpf-decode", "hpf-prefill", "overhead"]
    assert by["patched-hwprio"].env == {"XSCHED_POLICY": "NONE"}
    assert by["patched-hwprio"].scenarios == ["hpf-decode", "hpf-prefill"]
    assert by["patched-wrr"].scenarios == ["wrr"] and by["patched-wrr"].weights
    only = servers.plan(["patched"], ["overhead"], binaries, opts, hw_only=True)
    assert [r.name for r in only] == ["patched"]
