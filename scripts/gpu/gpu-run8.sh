#!/usr/bin/env bash
# gpu-run8.sh: the GPU run of 2026-12-03 (run 8): the tail (GGML_XQUEUE_TAIL_US, default 4000 us: a context launched in
# segments keeps up to that much GPU work queued across the end of a compute, adapted to the host time between
# computes) against run 7's behaviour (GGML_XQUEUE_TAIL_US=0) side by side; the preemption record's split of host
# launch time and device drain; the serve scenario (HPF) with and without the tail, and with CUDA stream priorities
# under HPF too. Both CUDA servers are cross-built off the GPU machine (scripts/gpu/cross-build-cuda.sh) and carried
# in two calls (each ~42 MB; a call carries 64 MiB): the patched one first, with the steps that need only it queued
# at once, then the vanilla one, whose steps queue behind them.
# The commands of every figure in docs/results/h200-2026-12-03-run8/ are the functions below.
#
# usage (repository root):
#   scripts/gpu/gpu-run8.sh chain STEP...     run the steps one after the other as one background job (CHAIN_NAME,
#                                         default "chain"; CHAIN_AFTER=JOB: start when that job has ended)
#   scripts/gpu/gpu-run8.sh run STEP          run one step in the foreground
# STEP: h8 h06 h17 ht8 hw8 o8 o06 o17 ot8 ot17 s8 st8 ssp8 s06 x2 smoke (see the functions). The run:
#   call 1, carrying .carry/d (patched-server.xz, libxsched.so, native.tar, the wheels, ggml-vocab-qwen2.gguf):
#     scripts/gpu/gpu-carried.sh setup .carry/d qwen3-8b qwen3-0.6b qwen3-1.7b \
#       && scripts/gpu/gpu-run8.sh chain h8 ht8 h17 h06 hw8; scripts/gpu/gpu-carried.sh wait 5 "$OUT"
#   call 2, carrying .carry/b (vanilla-server.xz), at once:
#     scripts/gpu/gpu-carried.sh setup .carry/b && CHAIN_NAME=chain2 CHAIN_AFTER=chain \
#       scripts/gpu/gpu-run8.sh chain o8 ot8 o17 ot17 o06 s8 st8 ssp8 smoke; scripts/gpu/gpu-carried.sh wait 480 "$OUT"
#   calls 3...: scripts/gpu/gpu-carried.sh wait 530 "$OUT", each at once after the last.
# Collect with `scripts/gpu/gpu-carried.sh wait S OUT` in EVERY call that waits, S at least 60 s under what is left of
# the call's limit: the machine and its /tmp go 30 s after a call ends (docs/results/h200-2026-12-02-run6/).
# environment: GC_DIR (scripts/gpu/gpu-carried.sh), BENCH_EXTRA (more words for every bench), SERVE_REQUESTS and
# SERVE_RATE (the 8B serve steps; default 100 requests at 2 per second), X2_LABELS (step x2's configurations; default
# "joined joinedpoll local hwprio vanilla")
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
# shellcheck source=scripts/lib/common.sh
. scripts/lib/common.sh
# shellcheck source=scripts/lib/steps.sh
. scripts/lib/steps.sh
steps_carried_setup
# every bench traces the timed computes of the segments (one warning line each, in the servers' logs)
export GGML_XQUEUE_TRACE=1

# the normal (preemptible) and the high instance against vanilla (the overhead scenario, both builds)
overhead() { "${B[@]}" --model "$1" --out "$RESULTS/$2" --reps 3 --scenario overhead ${BENCH_EXTRA:-}; }
step_o8() { overhead "$M8" o8; }
step_o06() { overhead "$M06" o06; }
step_o17() { overhead "$M17" o17; }
# the same without the tail (run 7's behaviour), side by side
step_ot8() { GGML_XQUEUE_TAIL_US=0 overhead "$M8" ot8; }
step_ot17() { GGML_XQUEUE_TAIL_US=0 overhead "$M17" ot17; }
# isolation, patched only: A (high) next to B decoding and next to B prefilling long prompts back to back
isolation() {
    "${P[@]}" --model "$1" --out "$RESULTS/$2" --reps 3 --no-hw-priority-only --scenario hpf-decode \
        --scenario hpf-prefill ${BENCH_EXTRA:-}
}
step_h8() { isolation "$M8" h8; }
step_h06() { isolation "$M06" h06; }
step_h17() { isolation "$M17" h17; }
step_ht8() { GGML_XQUEUE_TAIL_US=0 isolation "$M8" ht8; }
# harvest and WRR on the 8B shape (the targets that must still hold)
step_hw8() {
    "${P[@]}" --model "$M8" --out "$RESULTS/hw8" --reps 3 --no-hw-priority-only --scenario harvest --scenario wrr \
        ${BENCH_EXTRA:-}
}
# the serve scenario, HPF only (run 7 measured the baselines: vanilla, chunked, stream priorities only), 8B:
# with the tail (the default), without it, and with CUDA stream priorities under HPF too (the tail's queued work
# then runs behind the interactive kernels)
# The GPU's clocks and power every 200 ms beside each run (smi.csv): whether the interactive instance decodes slower
# with the batch parked because the device runs at lower clocks after the batch's prefill (run 7: TPOT P50 10.6 ms
# with the batch parked against 6.7 ms alone, not placed).
serve() {
    local smi=""
    mkdir -p "$RESULTS/$1"
    if command -v nvidia-smi > /dev/null; then
        nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu,utilization.gpu,clocks_throttle_reasons.active \
            --format=csv -lms 200 > "$RESULTS/$1/smi.csv" 2>&1 & smi=$!
    fi
    "${P[@]}" --model "$M8" --out "$RESULTS/$1" --scenario serve --no-hw-priority-only \
        --serve-rate "${SERVE_RATE:-2.0}" --serve-requests "${SERVE_REQUESTS:-100}" ${BENCH_EXTRA:-}
    [ -z "$smi" ] || { kill "$smi"; wait "$smi"; } 2> /dev/null
}
step_s8() { serve s8; }
step_st8() { GGML_XQUEUE_TAIL_US=0 serve st8; }
step_ssp8() { GGML_XQUEUE_STREAM_PRIORITY=on serve ssp8; }
# the serve scenario on the 0.6B shape, HPF only (the issue's small shape), 100 requests at 4 per second
step_s06() {
    "${P[@]}" --model "$M06" --out "$RESULTS/s06" --scenario serve --no-hw-priority-only --serve-rate 4.0 \
        --serve-requests 100 ${BENCH_EXTRA:-}
}
# two server processes on one GPU (issue 15): an 8B-shaped server at priority 10 next to a 0.6B-shaped one at 0
# that prefills long prompts back to back; joined to one daemon (joinedpoll: the daemon polls for edges while a queue
# is Ready, `xsched-llama scheduler --poll`), each scheduling locally, stream priorities only (policy NONE), two
# vanilla servers
step_x2() {
    local o=$RESULTS/x2 s=/tmp/xsched-gpu/xschedd.sock d="" pa pb label bin
    local srv=(-ngl 99 -c 8192 -fit off --no-warmup) a=() b=()
    mkdir -p "$o" && mkdir -p /tmp/xsched-gpu && chmod 700 /tmp/xsched-gpu
    for label in ${X2_LABELS:-joined joinedpoll local hwprio vanilla}; do
        bin=$PATCHED a=(--instances 10:1:1) b=(--instances 0:1:1) d=""
        case $label in
        joined|joinedpoll)
            a+=(--xsched-scheduler "$s"); b+=(--xsched-scheduler "$s")
            if [ $label = joinedpoll ]; then
                python3 -m xsched_llama scheduler --socket "$s" --poll 2> "$o/xschedd-$label.log" & d=$!
            else
                python3 -m xsched_llama scheduler --socket "$s" 2> "$o/xschedd-$label.log" & d=$!
            fi
            sleep 1 ;;
        local) ;; # each process schedules its own queues (HPF): A's solo decode against joined's is the gate cost
        hwprio) a+=(--xsched-policy NONE); b+=(--xsched-policy NONE) ;;
        vanilla) [ -e "$VANILLA" ] || continue; bin=$VANILLA a=() b=() ;;
        esac
        "$bin" -m "$M8" "${srv[@]}" "${a[@]}" --port 8081 2> "$o/a-$label.log" & pa=$!
        "$bin" -m "$M06" "${srv[@]}" "${b[@]}" --port 8082 2> "$o/b-$label.log" & pb=$!
        if python3 -c 'import sys,time,urllib.request as u
for url in sys.argv[1:]:
    for _ in range(600):
        try: u.urlopen(url + "/health", timeout=2); break
        except Exception: time.sleep(0.5)
    else: sys.exit(1)' http://127.0.0.1:8081 http://127.0.0.1:8082; then
            python3 scripts/effect/two-servers-bench.py --a http://127.0.0.1:8081 --b http://127.0.0.1:8082 \
                --a-tokens 256 --b-prompt-tokens 6300 --reps 5 --solo-reps 15 --label $label --out "$o/$label.json"
            if [ -n "$d" ]; then
                python3 -m xsched_llama scheduler status --socket "$s" --json > "$o/status-$label.json" 2>&1
            fi
        else
            echo "x2 $label: a server did not come up (logs in $o)"
        fi
        kill "$pa" "$pb" 2> /dev/null; wait "$pa" "$pb" 2> /dev/null
        if [ -n "$d" ]; then
            kill "$d" 2> /dev/null; wait "$d" 2> /dev/null
            tail -n 2 "$o/xschedd-$label.log"
        fi
    done
}
# the GPU tests
step_smoke() {
    XSCHED_LLAMA_TEST_SERVER=$PATCHED XSCHED_LLAMA_TEST_MODEL=$M06 XSCHED_LLAMA_SIGINT_RUNS=5 \
        python3 -m pytest -m gpu -p no:cacheprovider -q -s tests/test_server_gpu.py 2>&1 | tail -60
}

[ $# -ge 1 ] || die "a command is required (see the header)"
cmd=$1
shift
steps_dispatch scripts/gpu/gpu-run8.sh "$cmd" "$@" || die "unknown command $cmd (run, chain)"
