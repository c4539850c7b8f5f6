"""GET /xsched/ui (the live view) rendered by headless Chromium (Debian's `chromium`) against a real CPU server.

Chromium runs the page's own polling (`--virtual-time-budget` lets its timers and fetches run, then `--dump-dom`
prints the rendered document); the rows of its two tables are checked against GET /xsched taken at the same moment.
Skipped only when no chromium binary is installed (`.ci/run` installs it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import requests

from xsched_llama.server import ServerProcess

from test_server_admission import send, wait_idle
from test_server_instances import common_args, server_binary  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Tables(HTMLParser):
    """Tables collects every <table id=...>: its header cells and the text of each body row's cells."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, dict[str, Any]] = {}
        self.spans: dict[str, str] = {}
        self._table: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._span: str | None = None
        self._in_head = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table" and a.get("id"):
            self._table = a["id"]
            self.tables[self._table] = {"head": [], "rows": []}
        elif tag == "thead":
            self._in_head = True
        elif tag == "tr" and self._table:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "span" and a.get("id"):
            self._span = a["id"]
            self.spans[self._span] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table:
            self.tables[self._table]["head" if self._in_head else "rows"].append(self._row)
            self._row = None
        elif tag == "thead":
            self._in_head = False
        elif tag == "table":
            self._table = None
        elif tag == "span":
            self._span = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._span is not None:
            self.spans[self._span] += data


def chromium(*args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--no-first-run", "--hide-scrollbars", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)


def render(url: str) -> tuple[dict[str, list[dict[str, str]]], dict[str, str]]:
    """render() loads the live view, lets it poll for 3.5 s of virtual time and returns its rows as dicts."""
    cp = chromium("--virtual-time-budget=3500", "--dump-dom", url + "/xsched/ui")
    p = Tables()
    p.feed(cp.stdout)
    out: dict[str, list[dict[str, str]]] = {}
    for name, t in p.tables.items():
        head = t["head"][0]
        out[name] = [dict(zip(head, row)) for row in t["rows"]]
    return out, p.spans


def state_of(q: dict[str, Any]) -> str:
    """the page's rule (server-xsched-ui.cpp, stateOf): parked, running or idle"""
    if q["suspended"]:
        return "parked"
    return "running" if q["state"] == "ready" or q["active_scopes"] > 0 else "idle"


@pytest.fixture(scope="module")
def srv(server_binary: Path, default_model: Path,  # noqa: F811
        tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("srv-ui")
    args = [*common_args(default_model), "--instances", "10:1:1,0:2:1:1"]
    with ServerProcess(server_binary, args, log_path=tmp / "server.log") as s:
        yield s


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install chromium)")
def test_live_view_rows_match_xsched(srv: ServerProcess) -> None:
    url = srv.url
    # some load first, so that queues have units and the low instance's 429 counter is not 0
    barrier = threading.Barrier(4)
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = [f.result() for f in [pool.submit(send, url, f"ui{i}", 0, 16, False, barrier) for i in range(4)]]
    n_429 = sum(a["status"] == 429 for a in answers)
    assert n_429 >= 1
    wait_idle(url)

    tables, spans = render(url)
    snap = requests.get(url + "/xsched", timeout=30).json()
    assert spans["policy"] == f"policy {snap['policy']}"
    assert spans["admission"] == "waiting 0 of no global bound"
    assert spans["err"] == ""
    rows = tables["instances"]
    assert len(rows) == len(snap["instances"]) == 2
    for row, inst in zip(rows, snap["instances"]):
        assert row["instance"] == inst["name"]
        assert int(row["priority"]) == inst["priority"]
        assert int(row["weight"]) == inst["weight"]
        assert int(row["slots"]) == inst["n_slots"]
        assert int(row["pending"]) == inst["pending"] == 0
        assert int(row["waiting"]) == inst["waiting"] == 0
        assert row["queue bound"] == ("none" if inst["max_waiting"] is None else str(inst["max_waiting"]))
        assert int(row["rejected"]) == inst["rejected"]
        assert int(row["evicted"]) == inst["evicted"] == 0
        assert row["state"] == "idle"
    assert rows[1]["rejected"] == str(n_429) and rows[1]["queue bound"] == "1"
    queues = tables["queues"]
    assert [q["queue"] for q in queues] == [q["name"] for q in snap["queues"]]
    assert len(queues) >= 2
    for row, q in zip(queues, snap["queues"]):
        assert int(row["priority"]) == q["priority"] and int(row["weight"]) == q["weight"]
        assert row["state"] == state_of(q) == "idle"
        assert int(row["units"]) == q["units"]
        assert int(row["in flight"]) == q["in_flight"] == 0


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install chromium)")
def test_live_view_while_running(srv: ServerProcess, tmp_path: Path) -> None:
    """While a long low-priority stream runs, the page shows it as pending and not idle; a screenshot is taken
    (XSCHED_LLAMA_UI_SCREENSHOT=PATH keeps it, as docs/images/xsched-ui.png was made)."""
    url = srv.url
    body = {"prompt": "Count: 1 2 3", "n_predict": 100000, "ignore_eos": True, "stream": True, "priority": 0}
    with requests.post(url + "/completion", json=body, stream=True, timeout=600) as r:
        assert r.status_code == 200
        lines = r.iter_lines()  # kept referenced: a collected generator closes the connection
        assert next(lines).startswith(b"data: ")  # the stream has started
        tables, _ = render(url)
        low = tables["instances"][1]
        assert low["pending"] == "1" and low["state"] in ("running", "parked")
        assert tables["instances"][0]["pending"] == "0"
        assert any(q["queue"].startswith("inst1/") and q["state"] != "idle" for q in tables["queues"])
        shot = tmp_path / "xsched-ui.png"
        # 2.5 s of the page's (virtual) time: three polls, so that tokens/s has a value
        chromium("--virtual-time-budget=2500", "--window-size=1440,450", f"--screenshot={shot}", url + "/xsched/ui")
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        keep = os.environ.get("XSCHED_LLAMA_UI_SCREENSHOT")
        if keep:
            shutil.copyfile(shot, keep)
        assert next(ln for ln in lines if ln).startswith(b"data: ")  # still streaming
    wait_idle(url)
