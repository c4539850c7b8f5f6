#!/usr/bin/env bash
# gpu-run4.sh: the GPU proof of 2026-12-02 (run 4: segments, the preemption histogram, the serve scenario) on an
# offline GPU machine with carried binaries (scripts/gpu/cross-build-cuda.sh), driven through scripts/gpu/gpu-carried.sh.
# The commands of every figure in docs/results/h200-2026-12-02-run4/ are the functions below.
#
# usage (repository root):
#   scripts/gpu/gpu-run4.sh setup CARRY...      unpack each carried folder (wheels, ggml-vocab-qwen2.gguf, *.xz binaries,
#                                           libxsched.so) and synthesize the models (qwen3-8b, qwen3-0.6b, qwen3-1.7b)
#   scripts/gpu/gpu-run4.sh chain STEP...       run the steps one after the other as one background job "chain"
#   scripts/gpu/gpu-run4.sh run STEP            run one step in the foreground
# STEP: smoke b06 b8 b17 s8 s06 diag alt (see the functions). Collect with `scripts/gpu/gpu-carried.sh wait S OUT`.
# environment: GC_DIR (scripts/gpu/gpu-carried.sh), BENCH_EXTRA (more words for every bench)
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
# shellcheck source=scripts/lib/common.sh
. scripts/lib/common.sh
# shellcheck source=scripts/lib/steps.sh
. scripts/lib/steps.sh
steps_carried_setup

# the GPU tests: instances' queues, load, cancel, shutdown, segments = whole graphs, D1, D3, D4, D8, out of memory
step_smoke() {
    XSCHED_LLAMA_TEST_SERVER=$PATCHED XSCHED_LLAMA_TEST_MODEL=$M06 XSCHED_LLAMA_SIGINT_RUNS=5 \
        python3 -m pytest -m gpu -p no:cacheprovider -q -s tests/test_server_gpu.py 2>&1 | tail -60
}
# every closed-loop scenario on the 0.6B shape (launch-bound decode), with the stream-priority-only baseline
step_b06() { "${B[@]}" --model "$M06" --out "$RESULTS/b06" --reps 3 ${BENCH_EXTRA:-}; }
# every closed-loop scenario on the 8B shape
step_b8() { "${B[@]}" --model "$M8" --out "$RESULTS/b8" --reps 3 --no-hw-priority-only ${BENCH_EXTRA:-}; }
# overhead and prefill isolation on the 1.7B shape
step_b17() {
    "${B[@]}" --model "$M17" --out "$RESULTS/b17" --reps 3 --no-hw-priority-only --scenario overhead \
        --scenario hpf-decode --scenario hpf-prefill ${BENCH_EXTRA:-}
}
# the serve scenario, four configurations
step_s8() { "${B[@]}" --model "$M8" --out "$RESULTS/s8" --scenario serve ${BENCH_EXTRA:-}; }
step_s06() { "${B[@]}" --model "$M06" --out "$RESULTS/s06" --scenario serve ${BENCH_EXTRA:-}; }
# issue 12: the serve HPF configuration without llama-server's RAM prompt cache, at the rate of the s8 run
step_diag() {
    local rate
    rate=$(python3 -c "import json,sys;r=json.load(open(sys.argv[1]));print(next(x for x in r['runs'] \
        if x['name'].startswith('serve-'))['scenarios']['serve']['metrics']['rates'][0])" "$RESULTS/s8/report.json") \
        || { echo "diag needs the s8 report (its rate)" >&2; return 1; }
    "${B[@]}" --model "$M8" --out "$RESULTS/diag-s8" --scenario serve --builds patched --no-hw-priority-only \
        --serve-rate "$rate" --server-arg=--cache-ram --server-arg=0 ${BENCH_EXTRA:-}
}
# the alternatives on the 0.6B shape: one gate per node without graphs (the old default), a 200 us segment budget
step_alt() {
    GGML_XQUEUE_PREEMPT=node "${B[@]}" --model "$M06" --out "$RESULTS/alt-node" --builds patched --no-hw-priority-only \
        --scenario overhead --scenario hpf-prefill --reps 3
    GGML_XQUEUE_SEGMENT_US=200 "${B[@]}" --model "$M06" --out "$RESULTS/alt-200" --builds patched \
        --no-hw-priority-only --scenario overhead --scenario hpf-prefill --reps 3
}

[ $# -ge 1 ] || die "a command is required (see the header)"
cmd=$1
shift
case "$cmd" in
setup)
    [ $# -ge 1 ] || die "setup CARRY..."
    for c in "$@"; do
        $G setup "$c" qwen3-8b qwen3-0.6b qwen3-1.7b || exit 1
    done
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    ;;
*)
    steps_dispatch scripts/gpu/gpu-run4.sh "$cmd" "$@"
    rc=$?
    [ $rc -ne 64 ] || die "unknown command $cmd"
    exit $rc
    ;;
esac
