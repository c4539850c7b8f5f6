#!/usr/bin/env bash
# gpu-run9.sh: the GPU run of 2026-12-03 (run 9): Level 2 (GGML_XQUEUE_HOLD=device, the default: a context launched
# in segments launches up to 64 segments ahead, each behind a device barrier that a suspension holds) against Level 1
# (GGML_XQUEUE_HOLD=host: the gate blocks the launching thread) side by side; the serve scenario with the interactive
# instance's unified KV cache (the default since 0af675d) and without it (-no-kvu); the kill tests of issue 15 on the
# GPU, 20 times each; the decision latency of two processes again.
# The patched CUDA server is built on the GPU machine (scripts/gpu/gpu-run5.sh build), the vanilla one is carried.
# The commands of every figure in docs/results/h200-2026-12-03-run9/ are the functions below.
#
# usage (repository root):
#   scripts/gpu/gpu-run9.sh chain STEP...     run the steps one after the other as one background job (CHAIN_NAME,
#                                         default "chain"; CHAIN_AFTER=JOB: start when that job has ended)
#   scripts/gpu/gpu-run9.sh run STEP          run one step in the foreground
# STEP: o8 oh8 h8 hh8 o17 o06 h17 h06 hw8 s8 sn8 s17 l06 l17 lo06 lh06 kill x2 smoke (see the functions). The run, call 1 carrying
# .carry/g (the wheels, src.txz = the pruned llama.cpp tree and its manifest, vanilla-server.xz, native.tar):
#   mkdir -p /tmp/gc/cache/src && tar -C /tmp/gc/cache/src -xJf .carry/g/src.txz && mkdir -p .carry/g/src \
#     && ln -sfn /tmp/gc/cache/src/<commit>/llama.cpp .carry/g/src/llama.cpp && scripts/gpu/gpu-run5.sh build .carry/g \
#     && CHAIN_AFTER=bpatched scripts/gpu/gpu-run9.sh chain STEP...; scripts/gpu/gpu-carried.sh wait 530 "$OUT"
#   calls 2...: scripts/gpu/gpu-carried.sh wait 560 "$OUT", each at once after the last.
# Collect with `scripts/gpu/gpu-carried.sh wait S OUT` in EVERY call that waits, S at least 40 s under what is left of
# the call's limit: the machine and its /tmp go 30 s after a call ends (docs/results/h200-2026-12-02-run6/).
# environment: GC_DIR (scripts/gpu/gpu-carried.sh), BENCH_EXTRA (more words for every bench), SERVE_REQUESTS
# (interactive requests per phase of the serve steps, default 200), X2_LABELS (step x2's configurations; default
# "joined joinedpoll"), KILL_REPEAT (step kill, default 20)
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
step_oh8() { GGML_XQUEUE_HOLD=host overhead "$M8" oh8; }
step_o17() { overhead "$M17" o17; }
step_o06() { overhead "$M06" o06; }
# isolation and the closed-loop preemption latency, patched only: A (high) next to B decoding and prefilling
isolation() {
    "${P[@]}" --model "$1" --out "$RESULTS/$2" --reps 3 --no-hw-priority-only --scenario hpf-decode \
        --scenario hpf-prefill ${BENCH_EXTRA:-}
}
step_h8() { isolation "$M8" h8; }
step_hh8() { GGML_XQUEUE_HOLD=host isolation "$M8" hh8; }
step_h17() { isolation "$M17" h17; }
step_h06() { isolation "$M06" h06; }
# harvest and WRR on the 8B shape (the targets that must still hold)
step_hw8() {
    "${P[@]}" --model "$M8" --out "$RESULTS/hw8" --reps 3 --no-hw-priority-only --scenario harvest --scenario wrr \
        ${BENCH_EXTRA:-}
}
# the serve scenario, HPF, with the GPU's clocks and power every 200 ms beside it (smi.csv)
serve() {
    local name=$1 model=$2 rate=$3 smi=""
    shift 3
    mkdir -p "$RESULTS/$name"
    if command -v nvidia-smi > /dev/null; then
        nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu,utilization.gpu,clocks_throttle_reasons.active \
            --format=csv -lms 200 > "$RESULTS/$name/smi.csv" 2>&1 & smi=$!
    fi
    "${P[@]}" --model "$model" --out "$RESULTS/$name" --scenario serve --no-hw-priority-only \
        --serve-rate "$rate" --serve-requests "${SERVE_REQUESTS:-200}" "$@" ${BENCH_EXTRA:-}
    [ -z "$smi" ] || { kill "$smi"; wait "$smi"; } 2> /dev/null
}
step_s8() { serve s8 "$M8" 2.0; }
# the interactive instance's KV cache per slot again (run 8's layout), 100 requests
step_sn8() { SERVE_REQUESTS=${SERVE_REQUESTS:-100} serve sn8 "$M8" 2.0 --server-arg=-no-kvu; }
# the small shape (1.7B), 4 requests per second
step_s17() { serve s17 "$M17" 4.0; }
# Level 2 after run 9's hang (h06 at GGML_XQUEUE_HOLD=device stopped both instances at the first prefill
# preemption). Since then the barrier and the Done mark are launched without the queue's mutex (a held stream's
# full launch queue blocked a launch call that held it, and the resume needs it) and the segments ahead are limited
# to about 256 nodes (ggml_xqueue_level_ahead). Isolation on 0.6B and 1.7B at Level 2, then the normal instance
# against the high one at both levels (patched only: the vanilla server is not carried in this call); 45 s each, a
# hung server is killed
diag() {
    local name=$1 model=$2 hold=$3
    shift 3
    GGML_XQUEUE_HOLD=$hold timeout 45 "${P[@]}" --model "$model" --out "$RESULTS/$name" --reps 3 \
        --no-hw-priority-only "$@" ${BENCH_EXTRA:-}
    echo "diag $name: exit $?"
    pkill -9 -x patched-server && echo "diag $name: a server was left running (killed)"
    return 0
}
step_l06() { diag l06 "$M06" device --scenario hpf-decode --scenario hpf-prefill; }
step_l17() { diag l17 "$M17" device --scenario hpf-decode --scenario hpf-prefill; }
step_lo06() { diag lo06 "$M06" device --scenario overhead; }
step_lh06() { diag lh06 "$M06" host --scenario overhead; }
# the kill tests of issue 15 on the GPU: SIGKILL of either server and of the daemon during load, KILL_REPEAT times
step_kill() {
    XSCHED_LLAMA_TEST_SERVER=$PATCHED XSCHED_LLAMA_TEST_MODEL=$M06 XSCHED_LLAMA_KILL_REPEAT=${KILL_REPEAT:-20} \
        XSCHED_LLAMA_KILL_SCALE=4 python3 -m pytest -p no:cacheprovider -q -s tests/test_scheduler_servers.py \
        -k "sigkill" 2>&1 | tail -80
}
# two server processes on one GPU (issue 15): an 8B-shaped server at priority 10 next to a 0.6B-shaped one at 0
# that prefills long prompts back to back; joined to one daemon (joinedpoll: the daemon polls for edges while a queue
# is Ready, `xsched-llama scheduler --poll`), each scheduling locally, stream priorities only (policy NONE), two
# vanilla servers
step_x2() {
    local o=$RESULTS/x2 s=/tmp/xsched-gpu/xschedd.sock d="" pa pb label bin
    local srv=(-ngl 99 -c 8192 -fit off --no-warmup) a=() b=()
    mkdir -p "$o" && mkdir -p /tmp/xsched-gpu && chmod 700 /tmp/xsched-gpu
    for label in ${X2_LABELS:-joined joinedpoll}; do
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
steps_dispatch scripts/gpu/gpu-run9.sh "$cmd" "$@"
rc=$?
[ $rc -ne 64 ] || die "unknown command $cmd (run, chain)"
exit $rc
