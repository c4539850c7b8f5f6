#!/usr/bin/env python3
"""two-servers-bench.py: task A on one llama-server next to task B, a neighbour on ANOTHER server process that
prefills long prompts back to back (issue 15's target; docs/scheduler.md, "GPU plan").

A's latency (one request of --a-tokens generated tokens) is measured alone (--reps times, B idle) and then while B
sends --b-prompt-tokens-token prompts back to back (n_predict 1, no prompt cache); the figure is the ratio of the
medians. The servers are started by the caller (daemon joined, stream priorities only, or vanilla).

    scripts/two-servers-bench.py --a http://127.0.0.1:8081 --b http://127.0.0.1:8082 --out ab.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time

import requests


def one_a(url: str, tokens: int) -> dict[str, float]:
    t0 = time.monotonic()
    r = requests.post(url + "/completion", json={"prompt": "Write a story about a lighthouse.", "n_predict": tokens,
                                                 "ignore_eos": True, "temperature": 0, "cache_prompt": False},
                      timeout=3600)
    r.raise_for_status()
    t = r.json().get("timings", {})
    return {"latency_s": time.monotonic() - t0, "predicted_n": float(t.get("predicted_n", 0)),
            "predicted_per_second": float(t.get("predicted_per_second", 0))}


def b_loop(url: str, prompt_tokens: int, stop: threading.Event, seen: list[dict[str, float]]) -> None:
    prompt = " ".join(["hello"] * prompt_tokens)
    while not stop.is_set():
        t0 = time.monotonic()
        r = requests.post(url + "/completion", json={"prompt": prompt, "n_predict": 1, "temperature": 0,
                                                     "cache_prompt": False}, timeout=3600)
        if r.status_code != 200:
            print(f"B: HTTP {r.status_code}: {r.text[:200]}", file=sys.stderr)
            time.sleep(0.5)
            continue
        t = r.json().get("timings", {})
        seen.append({"latency_s": time.monotonic() - t0, "prompt_n": float(t.get("prompt_n", 0))})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--a", required=True, help="URL of task A's server (the important one)")
    ap.add_argument("--b", required=True, help="URL of task B's server (the prefilling neighbour)")
    ap.add_argument("--a-tokens", type=int, default=256)
    ap.add_argument("--b-prompt-tokens", type=int, default=6300)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--solo-reps", type=int, help="A's requests alone (default: --reps); the server's decode rate "
                    "of these (median) is the figure of a gate's cost, finer than the latency")
    ap.add_argument("--warmup-s", type=float, default=1.0, help="B runs this long before A's first request")
    ap.add_argument("--label", default="", help="name of the configuration, copied into the output")
    ap.add_argument("--out", help="write the result as JSON here")
    a = ap.parse_args()
    solo_reps = a.reps if a.solo_reps is None else a.solo_reps
    if a.reps < 1 or solo_reps < 1 or a.a_tokens < 1 or a.b_prompt_tokens < 1:
        ap.error("--reps, --solo-reps, --a-tokens and --b-prompt-tokens must be at least 1")
    one_a(a.a, 8)  # warm-up of A's server
    solo = [one_a(a.a, a.a_tokens) for _ in range(solo_reps)]
    stop = threading.Event()
    seen: list[dict[str, float]] = []
    th = threading.Thread(target=b_loop, args=(a.b, a.b_prompt_tokens, stop, seen), daemon=True)
    th.start()
    time.sleep(a.warmup_s)
    loaded = [one_a(a.a, a.a_tokens) for _ in range(a.reps)]
    b_during = len(seen)
    stop.set()
    th.join(timeout=3600)
    med_solo = statistics.median(x["latency_s"] for x in solo)
    med_loaded = statistics.median(x["latency_s"] for x in loaded)
    res = {"label": a.label, "a_tokens": a.a_tokens, "b_prompt_tokens": a.b_prompt_tokens, "reps": a.reps,
           "solo_reps": solo_reps, "a_solo_s": med_solo, "a_with_b_s": med_loaded, "ratio": med_loaded / med_solo,
           "a_solo_decode_tps": statistics.median(x["predicted_per_second"] for x in solo),
           "b_requests_during_a": b_during, "b_prompt_n": seen[0]["prompt_n"] if seen else None,
           "b_latency_s_median": statistics.median(x["latency_s"] for x in seen) if seen else None,
           "solo": solo, "with_b": loaded}
    print(f"{a.label or 'A'}: solo {med_solo:.3f} s ({res['a_solo_decode_tps']:.2f} tok/s decode, median of "
          f"{solo_reps}), next to B {med_loaded:.3f} s -> {res['ratio']:.3f}x "
          f"(B: {b_during} prompts of {res['b_prompt_n']} tokens meanwhile)")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(res, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
