"""Side-by-side benchmark of the patched llama-server against vanilla llama.cpp.

Modules, by concern:
    client     one HTTP completion request, streamed and timestamped per token
    load       a background neighbour that sends requests back to back
    stats      the figures (ratios, finish gaps, token rates) computed from timestamps
    scenarios  hpf-decode, hpf-prefill, harvest, wrr, overhead (and the dispatch to serve)
    serve      the serve scenario: open-loop interactive + closed-loop batch classes, calibration, phases
    serveparams   its workload, defaults, flag parsing and run-time estimate
    servemetrics  per-class figures with vLLM `bench serve` names (TTFT, TPOT, ITL, E2E, goodput)
    servereport   the serve comparison table (one column per configuration)
    openloop   Poisson arrivals and the open-loop request sender
    preempt    preemption latency from the server's GET /xsched histogram
    servers    which servers to start (builds, options, environment) and starting them
    report     targets, pass/fail, the JSON report and the terminal table
    plot, plot_serve   the PNG plot
    cli        the `xsched-llama bench` click command
"""
