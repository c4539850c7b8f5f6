"""Side-by-side benchmark of the patched llama-server against vanilla llama.cpp.

Modules, by concern:
    client     one HTTP completion request, streamed and timestamped per token
    load       a background neighbour that sends requests back to back
    stats      the figures (ratios, finish gaps, token rates) computed from timestamps
    scenarios  hpf-decode, hpf-prefill, harvest, wrr, overhead
    servers    which servers to start (builds, options, environment) and starting them
    report     targets, pass/fail, the JSON report and the terminal table
    plot       the PNG plot
    cli        the `xsched-llama bench` click command
"""
