#!/usr/bin/env bash
# ctx-bench-proof.sh: the GPU proof of issue 4 with xsched-ctx-bench and llama-bench, one group per call
# (each group stays under 10 minutes on an H100 with the Qwen3-8B-shaped model).
#
# usage (from the repo root, after `pip install --no-build-isolation --no-deps .` and
#   xsched-llama build --cuda --cuda-arch 90 --target llama-server --target llama-bench --target xsched-ctx-bench
#   xsched-llama build --vanilla --cuda --cuda-arch 90 --target llama-server --target llama-bench):
#
#   scripts/gpu/ctx-bench-proof.sh MODEL GROUP [OUTDIR]   (scripts/gpu/gpu-proof.sh runs the groups as steps)
#
# GROUP: overhead | hpf | wrr | baseline | vanilla-driver (builds the driver against the vanilla build; run once)
# OUTDIR (default ctx-bench-results): one JSON per run plus summary.txt (every command and its result lines).
# Environment: XSCHED_LLAMA_CACHE (the toolkit's cache), XSCHED_LLAMA_CUDA_ARCH (default 90), XSCHED_LLAMA_DURATION
# (s per phase, default 8). The two builds are found with `xsched-llama build --json` (a no-op when up to date).
set -eu
# shellcheck source=scripts/lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"

[ $# -ge 2 ] || { sed -n '2,16p' "$0"; exit 2; }
M=$1
GROUP=$2
OUT=${3:-ctx-bench-results}
DUR=${XSCHED_LLAMA_DURATION:-8}
ARCH=${XSCHED_LLAMA_CUDA_ARCH:-90}
P=$(build_root --cuda --cuda-arch "$ARCH" --target llama-server --target llama-bench --target xsched-ctx-bench)
V=$(build_root --vanilla --cuda --cuda-arch "$ARCH" --target llama-server --target llama-bench)
D=$P/build/bin/xsched-ctx-bench
VD=$V/driver/xsched-ctx-bench

[ -f "$M" ] || { echo "error: model $M not found" >&2; exit 1; }
[ -x "$D" ] || { echo "error: $D not built (xsched-llama build --cuda --cuda-arch $ARCH --target xsched-ctx-bench)" >&2; exit 1; }
mkdir -p "$OUT"
S=$OUT/summary.txt

# run NAME ENV... -- CMD...: runs CMD with the environment assignments, logs the command and its result lines
run() {
    name=$1; shift
    envs=""
    while [ "$1" != "--" ]; do envs="$envs $1"; shift; done
    shift
    echo "+$envs $*" | tee -a "$S"
    if ! env $envs "$@" > "$OUT/$name.log" 2> "$OUT/$name.err"; then
        tail -5 "$OUT/$name.err"
        echo "error: $name failed (log $OUT/$name.err)" | tee -a "$S"
        failed=1
        return 0
    fi
    grep -E "^(phase |solo-|concurrent|[A-B]_|\| )" "$OUT/$name.log" | tee -a "$S" || true
}
failed=0

case "$GROUP" in
overhead)
    VB=$V/build/bin/llama-bench
    PB=$P/build/bin/llama-bench
    run bench-vanilla -- "$VB" -m "$M" -ngl 99 -p 512 -n 128 -r 5
    run bench-patched -- "$PB" -m "$M" -ngl 99 -p 512 -n 128 -r 5
    run bench-patched-nographs GGML_CUDA_DISABLE_GRAPHS=1 -- "$PB" -m "$M" -ngl 99 -p 512 -n 128 -r 5
    run bench-vanilla-2 -- "$VB" -m "$M" -ngl 99 -p 512 -n 128 -r 5
    run overhead-decode -- "$D" -m "$M" --scenario overhead --duration "$DUR" --json "$OUT/overhead-decode.json"
    run overhead-prefill -- "$D" -m "$M" --scenario overhead --a-mode prefill --prompt 512 -b 512 --duration "$DUR" --json "$OUT/overhead-prefill.json"
    if [ -x "$VD" ]; then
        run overhead-decode-vanilla -- "$VD" -m "$M" --scenario overhead --duration "$DUR" --json "$OUT/overhead-decode-vanilla.json"
        run overhead-prefill-vanilla -- "$VD" -m "$M" --scenario overhead --a-mode prefill --prompt 512 -b 512 --duration "$DUR" --json "$OUT/overhead-prefill-vanilla.json"
    fi
    ;;
hpf)
    run hpf-decode -- "$D" -m "$M" --scenario hpf-decode --duration "$DUR" --json "$OUT/hpf-decode.json"
    run hpf-prefill -- "$D" -m "$M" --scenario hpf-prefill --duration "$DUR" --json "$OUT/hpf-prefill.json"
    run harvest -- "$D" -m "$M" --scenario harvest --duration "$DUR" --json "$OUT/harvest.json"
    run hpf-decode-nodes GGML_XQUEUE_PREEMPT=node -- "$D" -m "$M" --scenario hpf-decode --duration "$DUR" --json "$OUT/hpf-decode-nodes.json"
    run harvest-nodes GGML_XQUEUE_PREEMPT=node -- "$D" -m "$M" --scenario harvest --duration "$DUR" --json "$OUT/harvest-nodes.json"
    ;;
wrr)
    run wrr-1-1 -- "$D" -m "$M" --scenario wrr --duration "$DUR" --json "$OUT/wrr-1-1.json"
    run wrr-3-1 -- "$D" -m "$M" --scenario wrr --a-weight 3 --duration "$DUR" --json "$OUT/wrr-3-1.json"
    run wrr-3-1-t20ms XSCHED_TIMESLICE_US=20000 -- "$D" -m "$M" --scenario wrr --a-weight 3 --phases concurrent --duration "$DUR" --json "$OUT/wrr-3-1-t20ms.json"
    ;;
baseline)
    run hpf-decode-none -- "$D" -m "$M" --scenario hpf-decode --policy NONE --duration "$DUR" --json "$OUT/hpf-decode-none.json"
    run hpf-decode-none-noprio GGML_XQUEUE_STREAM_PRIORITY=off -- "$D" -m "$M" --scenario hpf-decode --policy NONE --duration "$DUR" --json "$OUT/hpf-decode-none-noprio.json"
    run hpf-prefill-none -- "$D" -m "$M" --scenario hpf-prefill --policy NONE --duration "$DUR" --json "$OUT/hpf-prefill-none.json"
    if [ -x "$VD" ]; then
        run hpf-decode-vanilla -- "$VD" -m "$M" --scenario hpf-decode --duration "$DUR" --json "$OUT/hpf-decode-vanilla.json"
        run hpf-prefill-vanilla -- "$VD" -m "$M" --scenario hpf-prefill --duration "$DUR" --json "$OUT/hpf-prefill-vanilla.json"
    fi
    ;;
vanilla-driver)
    [ -f "$V/build/src/libllama.a" ] || { echo "error: no vanilla build in $V (xsched-llama build --vanilla --cuda --cuda-arch $ARCH --target llama-bench)" >&2; exit 1; }
    run vanilla-driver-configure -- cmake -S "$P/src/tools/xsched-ctx-bench" -B "$V/driver" -DCMAKE_BUILD_TYPE=Release -DLLAMA_SRC="$V/src" -DLLAMA_BUILD="$V/build"
    run vanilla-driver-build -- cmake --build "$V/driver" -j 8
    echo "built $VD" | tee -a "$S"
    ;;
*)
    echo "error: group $GROUP: expected overhead, hpf, wrr, baseline or vanilla-driver" >&2
    exit 2
    ;;
esac
exit $failed
