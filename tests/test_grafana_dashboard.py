"""The Grafana dashboard docs/grafana/xsched-llama.json: its shape, and every metric and label it names against a
running patched CPU server's /metrics (`--instances 10,0 --metrics`, the default model); with Debian's
`prometheus` on PATH, every panel's query also runs in a real Prometheus that scrapes that server."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from xsched_llama.server import ServerProcess, free_port

ROOT = Path(__file__).resolve().parent.parent
DASH = ROOT / "docs" / "grafana" / "xsched-llama.json"
REQUIRED = {
    "xsched:policy", "xsched:queue_ready", "xsched:queue_suspended", "xsched:queue_in_flight",
    "xsched:queue_units_total", "xsched:queue_suspended_seconds_total", "xsched:queue_gate_blocked_seconds_total",
    "xsched:preemptions_total", "xsched:preemption_latency_seconds_bucket",
    "llamacpp:tokens_predicted_total", "llamacpp:predicted_tokens_seconds", "llamacpp:prompt_tokens_total",
    "llamacpp:prompt_tokens_seconds", "llamacpp:requests_processing", "llamacpp:requests_deferred",
}
TARGET_LABELS = {"job", "instance"}  # added by Prometheus to every sample it scrapes
METRIC = re.compile(r"\b((?:xsched|llamacpp):[A-Za-z0-9_:]*[A-Za-z0-9_])")
SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})? \S+$")
GRAFANA_VARS = {"$__rate_interval": "10s", "$__range": "1m", "$job": ".*", "$server": ".*", "$priority": ".*"}


def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASH.read_text()))


def targets(d: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(p["title"], t) for p in d["panels"] for t in p.get("targets", [])]


def labels_used(expr: str, legend: str = "") -> set[str]:
    """Label names an expression groups by, matches on, or its legend shows."""
    out: set[str] = set()
    for m in re.finditer(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", expr):
        out |= {x.strip() for x in m.group(1).split(",") if x.strip()}
    for m in re.finditer(r"\{([^{}]*)\}", expr):
        out |= set(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", m.group(1)))
    return out | set(re.findall(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}", legend))


def exposition(text: str) -> dict[str, set[str]]:
    """exposition() maps each sample name of a /metrics text to the union of its label names."""
    out: dict[str, set[str]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        out.setdefault(m.group(1), set()).update(re.findall(r'([A-Za-z_][A-Za-z0-9_]*)="', m.group(2) or ""))
    return out


def as_stored(labels: set[str]) -> set[str]:
    """Label names as Prometheus stores them: an exposed `instance` becomes `exported_instance` (honor_labels off)."""
    return {"exported_instance" if x == "instance" else x for x in labels} | TARGET_LABELS


# --- the file itself ---

def test_json_is_the_generators_output() -> None:
    spec = importlib.util.spec_from_file_location("build_dashboard", ROOT / "docs" / "grafana" / "build_dashboard.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.render() == DASH.read_text(), "run python docs/grafana/build_dashboard.py"


def test_shape() -> None:
    d = dashboard()
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    defined = {v["name"] for v in d["templating"]["list"]}
    assert defined == {"datasource", "job", "server", "priority"}
    for p in d["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] == "${datasource}" and p["targets"], p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), p["title"]
        for t in p["targets"]:
            used = set(re.findall(r"\$(\w+)", t["expr"])) - {"__rate_interval", "__range"}
            assert used <= defined, (p["title"], used)
            assert t["expr"].count("(") == t["expr"].count(")"), t["expr"]


def test_covers_the_families() -> None:
    names = {n for _, t in targets(dashboard()) for n in METRIC.findall(t["expr"])}
    assert names >= REQUIRED, REQUIRED - names
    exprs = [t["expr"] for _, t in targets(dashboard())]
    for q in ("0.5", "0.99"):
        assert any(e.startswith(f"histogram_quantile({q}, ") and "xsched:preemption_latency_seconds_bucket" in e
                   for e in exprs), q


# --- against a running server ---

def _load(srv: ServerProcess, seconds: float) -> None:
    """A long low-priority request with short high-priority ones beside it, so both instances and queues work."""
    def low() -> None:
        srv.post("/completion", {"prompt": "Once upon a time " * 40, "n_predict": 48, "priority": 0})
    t = threading.Thread(target=low)
    t.start()
    end = time.monotonic() + seconds
    while time.monotonic() < end or t.is_alive():
        srv.post("/completion", {"prompt": "Hi", "n_predict": 4, "priority": 10})
    t.join()


@pytest.fixture
def srv(patched_cpu_server: Path, default_model: Path,
        start_server: Callable[..., ServerProcess]) -> ServerProcess:
    return start_server(patched_cpu_server, ["-m", str(default_model), "-c", "1024", "-t", "1", "-tb", "1",
                                             "--no-warmup", "--instances", "10,0", "--metrics"])


@pytest.mark.slow
def test_every_metric_and_label_exists(srv: ServerProcess) -> None:
    _load(srv, 1.0)
    r = srv.get("/metrics")
    assert r.status_code == 200
    samples = exposition(r.text)
    assert srv.get("/xsched").json()["available"], "the server was built without the core"
    for title, t in targets(dashboard()):
        names = METRIC.findall(t["expr"])
        assert names, (title, t["expr"])
        missing = [n for n in names if n not in samples]
        assert not missing, f"{title}: {missing} not in /metrics"
        have = set().union(*(as_stored(samples[n]) for n in names))
        assert labels_used(t["expr"], t.get("legendFormat", "")) <= have, (title, t["expr"], have)


@pytest.fixture
def prometheus(srv: ServerProcess, tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus is not installed (apt-get install prometheus)")
    port = free_port()
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text("global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
                   "scrape_configs:\n"
                   "  - job_name: xsched-llama\n"
                   f"    static_configs: [{{targets: ['{srv.url.split('://')[1]}']}}]\n")
    log = open(tmp_path / "prometheus.log", "w")
    proc = subprocess.Popen([binary, f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
            try:
                if requests.get(f"{url}/-/ready", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, "prometheus did not become ready"
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def query(url: str, expr: str) -> list[Any]:
    r = requests.get(f"{url}/api/v1/query", params={"query": expr}, timeout=10)
    body = r.json()
    assert r.status_code == 200 and body["status"] == "success", (expr, body)
    return list(body["data"]["result"])


@pytest.mark.slow
def test_every_query_returns_series_in_prometheus(srv: ServerProcess, prometheus: str) -> None:
    # scrapes while the instances work, then enough samples for the 10 s rate windows
    _load(srv, 4.0)
    deadline = time.monotonic() + 60
    while not query(prometheus, 'count_over_time(up{job="xsched-llama"}[1m]) >= 8'):
        assert time.monotonic() < deadline, query(prometheus, "up")
        time.sleep(0.5)
    d = dashboard()
    for title, t in targets(d):
        expr = t["expr"]
        for k, v in GRAFANA_VARS.items():
            expr = expr.replace(k, v)
        assert query(prometheus, expr), f"{title}: no series for {expr}"
    for v in d["templating"]["list"]:
        if v["type"] != "query":
            continue
        m = re.fullmatch(r"label_values\((.*), (\w+)\)", v["query"]["query"])
        assert m, v["query"]
        sel = m.group(1)
        for k, val in GRAFANA_VARS.items():
            sel = sel.replace(k, val)
        r = requests.get(f"{prometheus}/api/v1/label/{m.group(2)}/values", params={"match[]": sel}, timeout=10)
        assert r.json()["data"], (v["name"], sel)
