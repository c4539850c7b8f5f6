// server-xsched-ui.cpp: GET /xsched/ui, the live view of the scheduler: one self-contained HTML page (no
// external assets) that polls GET /xsched and GET /metrics once a second and shows every instance and queue.
#include "server-xsched.h"

const char * server_xsched_ui_html() {
    return R"HTML(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>xsched-llama: live view</title>
<style>
  :root { --fg:#1d2330; --mute:#6b7280; --line:#e5e7eb; --run:#16a34a; --park:#dc2626; --idle:#9ca3af; --bg:#fff; }
  @media (prefers-color-scheme: dark) { :root { --fg:#e5e7eb; --mute:#9ca3af; --line:#374151; --bg:#111827; } }
  body { font: 14px/1.4 system-ui, sans-serif; color: var(--fg); background: var(--bg); margin: 1.5rem; }
  h1 { font-size: 1.2rem; margin: 0 0 .2rem; } h2 { font-size: 1rem; margin: 1.4rem 0 .4rem; }
  .mute { color: var(--mute); } table { border-collapse: collapse; width: 100%; }
  th, td { text-align: right; padding: .25rem .6rem; border-bottom: 1px solid var(--line); white-space: nowrap; }
  th:first-child, td:first-child { text-align: left; } th { font-weight: 600; color: var(--mute); }
  .state { display: inline-block; min-width: 5.5em; padding: 0 .4em; border-radius: .3em; color: #fff; text-align: center; }
  .running { background: var(--run); } .parked { background: var(--park); } .idle { background: var(--idle); }
  #err { color: var(--park); }
</style>
</head>
<body>
<h1>xsched-llama</h1>
<div class="mute"><span id="policy">…</span> · <span id="admission">…</span> · updated <span id="when">never</span> <span id="err"></span></div>
<h2>Instances</h2>
<table id="instances"><thead><tr><th>instance</th><th>priority</th><th>weight</th><th>slots</th><th>pending</th>
<th>waiting</th><th>queue bound</th><th>rejected</th><th>evicted</th>
<th>state</th><th>tokens/s</th><th>parked s</th></tr></thead><tbody></tbody></table>
<h2>Queues</h2>
<table id="queues"><thead><tr><th>queue</th><th>priority</th><th>weight</th><th>state</th><th>in flight</th>
<th>units</th><th>suspended s</th><th>gate blocked s</th><th>preemptions</th><th>preempt P50 ms</th>
<th>preempt P99 ms</th><th>preempt max ms</th></tr></thead><tbody></tbody></table>
<p class="mute">A queue is <b>running</b> when it has work and is not held back, <b>parked</b> when the scheduler holds it
back, <b>idle</b> without work. <b>waiting</b>: completion requests beyond the instance's slots; <b>rejected</b>:
those answered 429 by admission control (refused on arrival or <b>evicted</b> for a more important one). Preemption latency: time from a more important queue's arrival until this queue's
in-flight GPU work had drained (P50/P99 are the upper bounds of the histogram buckets holding them).</p>
<script>
"use strict";
const prev = {};  // instance -> {t, tokens}
function text(v) { return v === undefined || v === null ? "–" : String(v); }
function cell(tr, v, cls) { const td = document.createElement("td"); td.textContent = text(v); if (cls) td.className = cls; tr.appendChild(td); return td; }
function stateOf(q) { return q.suspended ? "parked" : (q.state === "ready" || q.active_scopes > 0 ? "running" : "idle"); }
function badge(tr, s) { const td = document.createElement("td"); const b = document.createElement("span"); b.className = "state " + s; b.textContent = s; td.appendChild(b); tr.appendChild(td); }
function quantile(p, q) {
  if (!p || !p.measured) return null;
  const want = q * p.measured; let c = 0;
  for (let i = 0; i < p.buckets.length; i++) { c += p.buckets[i]; if (c >= want) return i < p.buckets_le_us.length ? p.buckets_le_us[i] / 1000 : Infinity; }
  return null;
}
function ms(v) { return v === null ? "–" : (v === Infinity ? "> " + "20" : v.toFixed(v < 1 ? 2 : 1)); }
function tokensByInstance(metrics) {
  const out = {};
  for (const line of metrics.split("\n")) {
    const m = line.match(/^llamacpp:tokens_predicted_total\{instance="(\d+)"[^}]*\} ([0-9.eE+-]+)/);
    if (m) out[m[1]] = parseFloat(m[2]);
  }
  return out;
}
async function tick() {
  try {
    const snap = await (await fetch("/xsched", { cache: "no-store" })).json();
    let tokens = {};
    try { const r = await fetch("/metrics", { cache: "no-store" }); if (r.ok) tokens = tokensByInstance(await r.text()); } catch (e) { }
    document.getElementById("policy").textContent = (snap.available ? "policy " + snap.policy : "built without the xsched core") +
      (snap.policy === "WRR" ? ", quantum " + snap.timeslice_us + " µs" : "");
    const adm = snap.admission || {};
    document.getElementById("admission").textContent = "waiting " + text(adm.waiting) + " of " +
      (adm.max_waiting === null || adm.max_waiting === undefined ? "no global bound" : "at most " + adm.max_waiting);
    const now = performance.now() / 1000;
    const ib = document.querySelector("#instances tbody"); ib.replaceChildren();
    for (const inst of snap.instances || []) {
      const qs = (snap.queues || []).filter(q => q.name.split("/")[0] === inst.name);
      const st = qs.some(q => q.suspended) ? "parked" : (qs.some(q => stateOf(q) === "running") ? "running" : "idle");
      let rate = null; const t = tokens[String(inst.id)];
      if (t !== undefined) { const p = prev[inst.id]; if (p && now > p.t) rate = (t - p.tokens) / (now - p.t); prev[inst.id] = { t: now, tokens: t }; }
      const tr = document.createElement("tr"); tr.dataset.instance = inst.id;
      cell(tr, inst.name); cell(tr, inst.priority); cell(tr, inst.weight); cell(tr, inst.n_slots); cell(tr, inst.pending);
      cell(tr, inst.waiting); cell(tr, inst.max_waiting === null ? "none" : inst.max_waiting); cell(tr, inst.rejected); cell(tr, inst.evicted);
      badge(tr, st); cell(tr, rate === null ? "–" : rate.toFixed(1));
      cell(tr, (Math.max(0, ...qs.map(q => q.suspended_us)) / 1e6).toFixed(2));
      ib.appendChild(tr);
    }
    const qb = document.querySelector("#queues tbody"); qb.replaceChildren();
    for (const q of snap.queues || []) {
      const tr = document.createElement("tr"); tr.dataset.queue = q.name; const p = q.preemption || null;
      cell(tr, q.name); cell(tr, q.priority); cell(tr, q.weight); badge(tr, stateOf(q)); cell(tr, q.in_flight); cell(tr, q.units);
      cell(tr, (q.suspended_us / 1e6).toFixed(2)); cell(tr, (q.gate_blocked_us / 1e6).toFixed(2));
      cell(tr, p ? p.count : "–"); cell(tr, ms(quantile(p, 0.5))); cell(tr, ms(quantile(p, 0.99))); cell(tr, p && p.measured ? ms(p.max_us / 1000) : "–");
      qb.appendChild(tr);
    }
    document.getElementById("when").textContent = new Date().toLocaleTimeString();
    document.getElementById("err").textContent = "";
  } catch (e) {
    document.getElementById("err").textContent = "· cannot reach the server: " + e;
  }
}
tick(); setInterval(tick, 1000);
</script>
</body>
</html>
)HTML";
}

const char * server_xsched_no_ui_html() {
    return R"HTML(<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>llama-server (xsched-llama)</title>
<style>body{font:15px/1.5 system-ui,sans-serif;max-width:44rem;margin:3rem auto;padding:0 1rem}code{background:#eee;padding:0 .2em}</style>
</head><body>
<h1>llama-server (xsched-llama)</h1>
<p>The server runs, but this build has no chat web UI: llama.cpp downloads it at build time from huggingface.co,
and the build machine could not reach it.</p>
<p>To add it, rebuild where huggingface.co is reachable (<code>xsched-llama build</code>), or unpack the pre-built UI of a
llama.cpp release into <code>tools/ui/dist</code> of the source tree and rebuild.</p>
<p>The API works as usual: <code>POST /completion</code>, <code>POST /v1/chat/completions</code> (with a
<code>"priority"</code> field), <code>GET /health</code>, <code>GET /xsched</code>, and the scheduler's live view at
<a href="/xsched/ui">/xsched/ui</a>.</p>
</body></html>
)HTML";
}
