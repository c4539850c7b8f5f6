#!/usr/bin/env bash
# gpu-run4.sh: the GPU proof of 2026-12-02 (run 4: segments, the preemption histogram, the serve scenario) on an
# offline GPU machine, driven in steps through scripts/gpu-carried.sh (each step is a background job; `wait`
# collects). The exact commands of every figure in docs/results/h200-2026-12-02-run4/ are the ones below.
#
# usage (repository root; CARRY = a folder with the wheels, ggml-vocab-qwen2.gguf and, unless the GPU machine
# builds it, patched-server.xz + libxsched.so; SRC = the pruned llama.cpp tree with its manifest.json beside it):
#   scripts/gpu-run4.sh setup CARRY SRC       wheels, models (qwen3-8b, qwen3-0.6b, qwen3-1.7b), pip install
#   scripts/gpu-run4.sh build both|vanilla    the CUDA llama-server(s) on this machine (both: ~8.5 min on 16 cores)
#   scripts/gpu-run4.sh STEP                  one of: smoke b06 b8 s8 s06 b17 alt diag (see below)
# environment: GC_DIR (scripts/gpu-carried.sh), BENCH_EXTRA (more words for every bench)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
G=scripts/gpu-carried.sh
eval "$($G env)"
die() { echo "error: $*" >&2; exit 1; }
[ $# -ge 1 ] || die "a step is required (see the header)"
step=$1
shift
B="python3 -m xsched_llama bench --cuda --vanilla-server $VANILLA --patched-server $PATCHED ${BENCH_EXTRA:-}"
M8=$MODELS/synth-qwen3-8b-q8_0.gguf
M06=$MODELS/synth-qwen3-0.6b-q8_0.gguf
M17=$MODELS/synth-qwen3-1.7b-q8_0.gguf
export XSCHED_LLAMA_CACHE=${XSCHED_LLAMA_CACHE:-/tmp/xl}

build_job() {  # build_job NAME FLAGS DEST: xsched-llama build, then the binary copied to DEST
    $G start "$1" -- bash -c "python3 -m xsched_llama build $2 --cuda --cuda-arch 90 --json > \$RESULTS/$1.json && \
        cp \"\$(python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))[\"binaries\"][\"llama-server\"])' \$RESULTS/$1.json)\" $3"
}

case "$step" in
setup)
    [ $# -eq 2 ] || die "setup CARRY SRC"
    export XSCHED_LLAMA_SOURCE=$2
    $G setup "$1" qwen3-8b qwen3-0.6b qwen3-1.7b || exit 1
    python3 -m pip install -q --no-build-isolation --no-deps . || die "pip install failed"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    ;;
build)
    [ $# -ge 1 ] || die "build both|vanilla"
    [ "$1" = both ] && build_job build-patched "" "$PATCHED"
    build_job build-vanilla --vanilla "$VANILLA"
    ;;
smoke)  # the GPU tests: instances' queues, load, cancel, shutdown, segments = whole graphs, D1/D3 on the GPU
    $G start smoke -- bash -c "XSCHED_LLAMA_TEST_SERVER=$PATCHED XSCHED_LLAMA_TEST_MODEL=$M06 \
        python3 -m pytest -m gpu -p no:cacheprovider -q -x tests/ 2>&1 | tail -40"
    ;;
b06)    # every scenario on the 0.6B shape (launch-bound decode)
    $G start b06 -- $B --model "$M06" --out "$RESULTS/b06" --reps 3
    ;;
b8)     # every scenario on the 8B shape
    $G start b8 -- $B --model "$M8" --out "$RESULTS/b8" --reps 3 --no-hw-priority-only
    ;;
b17)    # overhead and prefill isolation on the 1.7B shape
    $G start b17 -- $B --model "$M17" --out "$RESULTS/b17" --reps 3 --no-hw-priority-only \
        --scenario overhead --scenario hpf-prefill
    ;;
s8)     # the serve scenario on the 8B shape, four configurations
    $G start s8 -- $B --model "$M8" --out "$RESULTS/s8" --scenario serve
    ;;
s06)    # the serve scenario on the 0.6B shape
    $G start s06 -- $B --model "$M06" --out "$RESULTS/s06" --scenario serve
    ;;
alt)    # the alternatives on the 0.6B shape: one gate per node without graphs, and a 200 us segment budget
    $G start alt -- bash -c "GGML_XQUEUE_PREEMPT=node $B --model $M06 --out \$RESULTS/alt-node --builds patched \
        --no-hw-priority-only --scenario overhead --scenario hpf-prefill --reps 3; \
        GGML_XQUEUE_SEGMENT_US=200 $B --model $M06 --out \$RESULTS/alt-200 --builds patched \
        --no-hw-priority-only --scenario overhead --scenario hpf-prefill --reps 3"
    ;;
diag)   # issue 12: the serve HPF run without llama-server's RAM prompt cache, at the rate of the s8 run
    rate=$(python3 -c "import json,sys;r=json.load(open(sys.argv[1]));print(next(x for x in r['runs'] \
        if x['name'].startswith('serve-'))['scenarios']['serve']['metrics']['rates'][0])" "$RESULTS/s8/report.json") \
        || die "diag needs the s8 report (its rate)"
    $G start diag -- $B --model "$M8" --out "$RESULTS/diag-s8" --scenario serve --builds patched \
        --no-hw-priority-only --serve-rate "$rate" --server-arg=--cache-ram --server-arg=0
    ;;
*)
    die "unknown step $step"
    ;;
esac
