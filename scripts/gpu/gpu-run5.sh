#!/usr/bin/env bash
# gpu-run5.sh: the GPU run of 2026-12-02 (run 5: the core sees a preemption's drain itself, the in-flight window and
# a trace of the segments, the serve scenario with the prompt-cache rule) on an offline GPU machine. Both CUDA
# servers are built there from a carried pruned llama.cpp tree, in the background (scripts/gpu/gpu-carried.sh jobs).
# The commands of every figure in docs/results/h200-2026-12-02-run5/ are the functions below.
#
# usage (repository root):
#   scripts/gpu/gpu-run5.sh build CARRY       install CARRY/*.whl, fetch llama.cpp from CARRY/src/llama.cpp (or the
#                                         archive CARRY/src.txz), start the patched and vanilla CUDA builds (not
#                                         vanilla when CARRY/vanilla-server.xz is carried) and the model synthesis
#                                         as background jobs (bpatched, bvanilla, synth); each build links its
#                                         llama-server to $GC_DIR
#   scripts/gpu/gpu-run5.sh chain STEP...     run the steps one after the other as one background job "chain"
#   scripts/gpu/gpu-run5.sh run STEP          run one step in the foreground
# STEP: b8 s8 b06 w8 sp8 b17 smoke (see the functions). Collect with `scripts/gpu/gpu-carried.sh wait S OUT`.
# environment: GC_DIR (scripts/gpu/gpu-carried.sh), BENCH_EXTRA (more words for every bench)
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
# shellcheck source=scripts/lib/common.sh
. scripts/lib/common.sh
# shellcheck source=scripts/lib/steps.sh
. scripts/lib/steps.sh
steps_carried_setup
# every bench traces the timed computes of the segments (one log line each, in the servers' logs)
export GGML_XQUEUE_TRACE=1

# overhead and isolation on the 8B shape, vanilla and patched side by side
step_b8() {
    "${B[@]}" --model "$M8" --out "$RESULTS/b8" --reps 3 --no-hw-priority-only --scenario overhead \
        --scenario hpf-decode --scenario hpf-prefill ${BENCH_EXTRA:-}
}
# the serve scenario, patched HPF only, at run 4's rate (1 request/s = 0.3x one instance's capacity), 100 requests
step_s8() {
    "${B[@]}" --model "$M8" --out "$RESULTS/s8" --scenario serve --builds patched --no-hw-priority-only \
        --serve-rate 1.0 --serve-requests 100 ${BENCH_EXTRA:-}
}
# the same three scenarios on the 0.6B shape (launch-bound decode)
step_b06() {
    "${B[@]}" --model "$M06" --out "$RESULTS/b06" --reps 3 --no-hw-priority-only --scenario overhead \
        --scenario hpf-decode --scenario hpf-prefill ${BENCH_EXTRA:-}
}
# the alternative: four segments in flight instead of two, 8B, patched only
step_w8() {
    GGML_XQUEUE_WINDOW=4 "${B[@]}" --model "$M8" --out "$RESULTS/w8" --reps 3 --builds patched \
        --no-hw-priority-only --scenario overhead --scenario hpf-prefill ${BENCH_EXTRA:-}
}
# hypothesis (b) of run 5's closed-loop prefill preemptions: without CUDA stream priorities B's in-flight segments
# are not held behind A's kernels (8B, patched only)
step_sp8() {
    GGML_XQUEUE_STREAM_PRIORITY=off "${B[@]}" --model "$M8" --out "$RESULTS/sp8" --reps 3 --builds patched \
        --no-hw-priority-only --scenario hpf-prefill ${BENCH_EXTRA:-}
}
# the 1.7B shape
step_b17() {
    "${B[@]}" --model "$M17" --out "$RESULTS/b17" --reps 3 --no-hw-priority-only --scenario overhead \
        --scenario hpf-decode --scenario hpf-prefill ${BENCH_EXTRA:-}
}
# the GPU tests
step_smoke() {
    XSCHED_LLAMA_TEST_SERVER=$PATCHED XSCHED_LLAMA_TEST_MODEL=$M06 XSCHED_LLAMA_SIGINT_RUNS=5 \
        python3 -m pytest -m gpu -p no:cacheprovider -q -s tests/test_server_gpu.py 2>&1 | tail -60
}

[ $# -ge 1 ] || die "a command is required (see the header)"
cmd=$1
shift
case "$cmd" in
build)
    [ $# -eq 1 ] || die "build CARRY"
    carry=$1
    base=${GC_DIR:-/tmp/gc}
    src=$PWD/$carry/src
    if [ ! -d "$src/llama.cpp" ] && [ -f "$carry/src.txz" ]; then # the pruned tree as an archive (a smaller carry)
        src=$base/src
        mkdir -p "$src" && tar -C "$src" -xJf "$carry/src.txz" || die "cannot unpack $carry/src.txz"
    fi
    [ -d "$src/llama.cpp" ] || die "no pruned tree $carry/src/llama.cpp (or $carry/src.txz)"
    $G setup "$carry" || exit 1
    export XSCHED_LLAMA_SOURCE=$src/llama.cpp XSCHED_LLAMA_CACHE=$base/cache
    python3 -m pip install -q --no-build-isolation --no-deps . || die "pip install . failed (the core)"
    ln -sf "$(python3 -c 'import xsched_llama.native as n; print(n.lib_dir())')/libxsched.so" "$base/" \
        || die "no libxsched.so"
    python3 -m xsched_llama fetch || die "fetch failed"
    for v in patched vanilla; do
        # a vanilla server carried as CARRY/vanilla-server.xz (scripts/gpu/cross-build-cuda.sh --vanilla-only) is
        # not built again
        [ "$v" = vanilla ] && [ -x "$base/vanilla-server" ] && { echo "vanilla-server: carried"; continue; }
        flag=""
        [ "$v" = vanilla ] && flag=--vanilla
        # shellcheck disable=SC2016 # expanded by the job's shell
        $G start "b$v" -- bash -c 'python3 -m xsched_llama build '"$flag"' --cuda --cuda-arch 90 --target llama-server \
            --json > "$1.json" && python3 -c "import json,sys;print(json.load(open(sys.argv[1]))[\"binaries\"][\"llama-server\"])" \
            "$1.json" | xargs -I{} ln -sf {} "$1"' _ "$base/$v-server"
    done
    vocab=$XSCHED_LLAMA_SOURCE/models/ggml-vocab-qwen2.gguf
    # shellcheck disable=SC2016
    $G start synth -- bash -c 'for s in qwen3-8b qwen3-0.6b qwen3-1.7b; do python3 -c "from pathlib import Path;from xsched_llama.synth import synth;synth(\"$s\",Path(\"$1/synth-$s-q8_0.gguf\"),Path(\"$2\"))" || exit 1; done' \
        _ "$MODELS" "$vocab"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    ;;
*)
    steps_dispatch scripts/gpu/gpu-run5.sh "$cmd" "$@"
    rc=$?
    [ $rc -ne 64 ] || die "unknown command $cmd"
    exit $rc
    ;;
esac
