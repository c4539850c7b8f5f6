#!/usr/bin/env bash
# gpu-proof.sh: the whole GPU proof (patches, server, benchmarks) as one pipeline on an NVIDIA machine.
#
# usage (repository root, after `pip install --no-build-isolation --no-deps .`):
#   scripts/gpu/gpu-proof.sh OUTDIR [STEP...]
# STEP (default: all; all runs both builds at once, then smoke, vanilla-driver, wrr, bench, overhead, hpf, baseline):
#   build-patched   xsched-llama build --cuda (llama-server, llama-bench, xsched-ctx-bench)
#   synth           xsched-llama model synth --shape qwen3-8b (runs beside build-patched under "all")
#   build-vanilla   the same commit unpatched (llama-server, llama-bench); under "all" it runs beside
#                   build-patched and smoke
#   smoke           xsched-ctx-bench -v for 2 s per phase and tests/test_server_gpu.py on the synthetic model
#   vanilla-driver  xsched-ctx-bench built against the vanilla build (the driver's vanilla columns)
#   wrr overhead hpf baseline   the two-context driver and llama-bench groups (ctx_group below; each under 10 min)
#   bench           xsched-llama bench --cuda (vanilla, patched, hw-priority only, WRR)
# OUTDIR gets one log per step, summary.txt (every command, its status and duration, the result lines),
# ctx/ (the driver's JSON and logs) and bench/ (report.json, report.png, server logs).
# Environment: XSCHED_LLAMA_CUDA_ARCH (90), XSCHED_LLAMA_JOBS (core count), XSCHED_LLAMA_DURATION (s per driver
# phase, 6), XSCHED_LLAMA_MODEL (skip synth), XSCHED_LLAMA_REVISION (recorded in the summary when the tree is no git
# checkout), XSCHED_LLAMA_BENCH_ARGS (extra words for the bench,
# e.g. "--scenario wrr --builds patched"), XSCHED_LLAMA_CACHE (the toolkit's cache). A step that fails is
# recorded and the pipeline goes on; the exit status is 1 if any failed. Steps given by name run in the
# order given (e.g. `build-patched synth wrr bench` re-measures WRR only).
set -uo pipefail

[ $# -ge 1 ] || { sed -n '2,20p' "$0"; exit 2; }
out_arg=$1
shift
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=scripts/lib/common.sh
. "$root/scripts/lib/common.sh"
ARCH=${XSCHED_LLAMA_CUDA_ARCH:-90}
export XSCHED_LLAMA_CUDA_ARCH=$ARCH
JOBS=${XSCHED_LLAMA_JOBS:-$(nproc)}
export XSCHED_LLAMA_DURATION=${XSCHED_LLAMA_DURATION:-6}
MODEL=${XSCHED_LLAMA_MODEL:-}
ALL=(build-patched synth build-vanilla smoke vanilla-driver wrr bench overhead hpf baseline)
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(all)

for s in "${steps[@]}"; do
    [[ " all ${ALL[*]} " == *" $s "* ]] || { echo "error: unknown step $s (choose from all ${ALL[*]})" >&2; exit 2; }
done
OUT=$(mkdir -p "$out_arg" && cd "$out_arg" && pwd) || { echo "error: cannot create $out_arg" >&2; exit 2; }
S=$OUT/summary.txt
CTX=$OUT/ctx

# step NAME CMD...: runs CMD with its output in OUTDIR/NAME.log; records the command, status and duration.
step() {
    local name=$1 t0 rc
    shift
    t0=$(date +%s)
    echo "=== $name $(date -u +%FT%TZ): $*" >> "$S"
    "$@" > "$OUT/$name.log" 2>&1
    rc=$?
    echo "=== $name rc=$rc $(( $(date +%s) - t0 )) s" >> "$S"
    return $rc
}

model() {
    [ -n "${MODEL:-}" ] || MODEL=$(grep -E '^/.*\.gguf$' "$OUT/synth.log" 2>/dev/null | tail -1)
    [ -f "$MODEL" ] || { echo "error: no model (synth failed? see $OUT/synth.log)" >&2; return 1; }
}

build_cmd() {  # build_cmd [--vanilla] TARGET...
    local v=()
    [ "$1" = --vanilla ] && { v=(--vanilla); shift; }
    local t=()
    for x in "$@"; do t+=(--target "$x"); done
    xsched-llama build "${v[@]}" --cuda --cuda-arch "$ARCH" -j "$JOBS" "${t[@]}" --json
}

do_build_patched() { step build-patched build_cmd llama-server llama-bench xsched-ctx-bench; }
do_build_vanilla() { step build-vanilla build_cmd --vanilla llama-server llama-bench; }
do_synth() {
    if [ -n "${MODEL:-}" ]; then echo "=== synth skipped: MODEL=$MODEL" >> "$S"; return 0; fi
    step synth xsched-llama model synth --shape qwen3-8b
}

smoke_tests() {
    local d
    d=$(build_root --cuda --cuda-arch "$ARCH" --target llama-server --target llama-bench --target xsched-ctx-bench) \
        || return 1
    echo "+ xsched-ctx-bench -m $MODEL --scenario hpf-decode --duration 2 -v (full log: smoke-ctx.log)"
    timeout 120 "$d/build/bin/xsched-ctx-bench" -m "$MODEL" --scenario hpf-decode --duration 2 -v > "$OUT/smoke-ctx.log" 2>&1
    echo "rc=$?"
    grep -E "xsched|xqueue|CUDA graphs|^phase|^solo|^concurrent|^[AB]_|rror" "$OUT/smoke-ctx.log" | sort | uniq -c | head -40
    echo "+ python -m pytest -m gpu tests/test_server_gpu.py (XSCHED_LLAMA_TEST_MODEL=$MODEL)"
    (cd "$root" && XSCHED_LLAMA_TEST_MODEL=$MODEL XSCHED_LLAMA_CUDA_ARCH=$ARCH timeout 300 \
        python3 -m pytest -m gpu -p no:cacheprovider -x -q tests/test_server_gpu.py)
}
do_smoke() { model && step smoke smoke_tests; }

# ctx_run NAME ENV... -- CMD...: runs CMD with the environment assignments (output in ctx/NAME.log, .err), logs the
# command and its result lines in ctx/summary.txt; a failure is logged and counted in ctx_failed.
ctx_run() {
    local name=$1 envs=()
    shift
    while [ "$1" != "--" ]; do envs+=("$1"); shift; done
    shift
    echo "+${envs[*]:+ ${envs[*]}} $*" | tee -a "$CTX/summary.txt"
    if ! env "${envs[@]}" "$@" > "$CTX/$name.log" 2> "$CTX/$name.err"; then
        tail -5 "$CTX/$name.err"
        echo "error: $name failed (log $CTX/$name.err)" | tee -a "$CTX/summary.txt"
        ctx_failed=1
        return 0
    fi
    grep -E "^(phase |solo-|concurrent|[A-B]_|\| )" "$CTX/$name.log" | tee -a "$CTX/summary.txt" || true
}

# ctx_group GROUP: one group of the two-context driver and llama-bench runs (issue 4; each group stays under 10
# minutes on an H100 with the 8B-shaped model) into ctx/: overhead, hpf, wrr, baseline, or vanilla-driver (builds
# the driver against the vanilla build; once, before the groups that use its columns)
ctx_group() {
    local M=$MODEL DUR=$XSCHED_LLAMA_DURATION P V D VD VB PB
    P=$(build_root --cuda --cuda-arch "$ARCH" --target llama-server --target llama-bench --target xsched-ctx-bench) \
        || return 1
    V=$(build_root --vanilla --cuda --cuda-arch "$ARCH" --target llama-server --target llama-bench) || return 1
    D=$P/build/bin/xsched-ctx-bench
    VD=$V/driver/xsched-ctx-bench
    [ -x "$D" ] || { echo "error: $D not built (xsched-llama build --cuda --cuda-arch $ARCH --target xsched-ctx-bench)" >&2; return 1; }
    mkdir -p "$CTX"
    ctx_failed=0
    case "$1" in
    overhead)
        VB=$V/build/bin/llama-bench
        PB=$P/build/bin/llama-bench
        ctx_run bench-vanilla -- "$VB" -m "$M" -ngl 99 -p 512 -n 128 -r 5
        ctx_run bench-patched -- "$PB" -m "$M" -ngl 99 -p 512 -n 128 -r 5
        ctx_run bench-patched-nographs GGML_CUDA_DISABLE_GRAPHS=1 -- "$PB" -m "$M" -ngl 99 -p 512 -n 128 -r 5
        ctx_run bench-vanilla-2 -- "$VB" -m "$M" -ngl 99 -p 512 -n 128 -r 5
        ctx_run overhead-decode -- "$D" -m "$M" --scenario overhead --duration "$DUR" --json "$CTX/overhead-decode.json"
        ctx_run overhead-prefill -- "$D" -m "$M" --scenario overhead --a-mode prefill --prompt 512 -b 512 --duration "$DUR" --json "$CTX/overhead-prefill.json"
        if [ -x "$VD" ]; then
            ctx_run overhead-decode-vanilla -- "$VD" -m "$M" --scenario overhead --duration "$DUR" --json "$CTX/overhead-decode-vanilla.json"
            ctx_run overhead-prefill-vanilla -- "$VD" -m "$M" --scenario overhead --a-mode prefill --prompt 512 -b 512 --duration "$DUR" --json "$CTX/overhead-prefill-vanilla.json"
        fi
        ;;
    hpf)
        ctx_run hpf-decode -- "$D" -m "$M" --scenario hpf-decode --duration "$DUR" --json "$CTX/hpf-decode.json"
        ctx_run hpf-prefill -- "$D" -m "$M" --scenario hpf-prefill --duration "$DUR" --json "$CTX/hpf-prefill.json"
        ctx_run harvest -- "$D" -m "$M" --scenario harvest --duration "$DUR" --json "$CTX/harvest.json"
        ctx_run hpf-decode-nodes GGML_XQUEUE_PREEMPT=node -- "$D" -m "$M" --scenario hpf-decode --duration "$DUR" --json "$CTX/hpf-decode-nodes.json"
        ctx_run harvest-nodes GGML_XQUEUE_PREEMPT=node -- "$D" -m "$M" --scenario harvest --duration "$DUR" --json "$CTX/harvest-nodes.json"
        ;;
    wrr)
        ctx_run wrr-1-1 -- "$D" -m "$M" --scenario wrr --duration "$DUR" --json "$CTX/wrr-1-1.json"
        ctx_run wrr-3-1 -- "$D" -m "$M" --scenario wrr --a-weight 3 --duration "$DUR" --json "$CTX/wrr-3-1.json"
        ctx_run wrr-3-1-t20ms XSCHED_TIMESLICE_US=20000 -- "$D" -m "$M" --scenario wrr --a-weight 3 --phases concurrent --duration "$DUR" --json "$CTX/wrr-3-1-t20ms.json"
        ;;
    baseline)
        ctx_run hpf-decode-none -- "$D" -m "$M" --scenario hpf-decode --policy NONE --duration "$DUR" --json "$CTX/hpf-decode-none.json"
        ctx_run hpf-decode-none-noprio GGML_XQUEUE_STREAM_PRIORITY=off -- "$D" -m "$M" --scenario hpf-decode --policy NONE --duration "$DUR" --json "$CTX/hpf-decode-none-noprio.json"
        ctx_run hpf-prefill-none -- "$D" -m "$M" --scenario hpf-prefill --policy NONE --duration "$DUR" --json "$CTX/hpf-prefill-none.json"
        if [ -x "$VD" ]; then
            ctx_run hpf-decode-vanilla -- "$VD" -m "$M" --scenario hpf-decode --duration "$DUR" --json "$CTX/hpf-decode-vanilla.json"
            ctx_run hpf-prefill-vanilla -- "$VD" -m "$M" --scenario hpf-prefill --duration "$DUR" --json "$CTX/hpf-prefill-vanilla.json"
        fi
        ;;
    vanilla-driver)
        [ -f "$V/build/src/libllama.a" ] || { echo "error: no vanilla build in $V (xsched-llama build --vanilla --cuda --cuda-arch $ARCH --target llama-bench)" >&2; return 1; }
        ctx_run vanilla-driver-configure -- cmake -S "$P/src/tools/xsched-ctx-bench" -B "$V/driver" -DCMAKE_BUILD_TYPE=Release -DLLAMA_SRC="$V/src" -DLLAMA_BUILD="$V/build"
        ctx_run vanilla-driver-build -- cmake --build "$V/driver" -j 8
        echo "built $VD" | tee -a "$CTX/summary.txt"
        ;;
    esac
    return $ctx_failed
}

do_group() {  # do_group GROUP: one ctx_group as the step ctx-GROUP
    model || return 1
    step "ctx-$1" ctx_group "$1"
    grep -vE "^\+" "$OUT/ctx-$1.log" | sed "s/^/  [$1] /" >> "$S"
}

do_bench() {
    model || return 1
    # shellcheck disable=SC2086  # XSCHED_LLAMA_BENCH_ARGS is a list of words
    step bench xsched-llama bench --cuda --model "$MODEL" --out "$OUT/bench" ${XSCHED_LLAMA_BENCH_ARGS:-}
    tail -40 "$OUT/bench.log" | sed 's/^/  [bench] /' >> "$S"
}

run_one() {
    case "$1" in
        build-patched) do_build_patched ;;
        build-vanilla) do_build_vanilla ;;
        synth) do_synth ;;
        smoke) do_smoke ;;
        vanilla-driver) do_group vanilla-driver ;;
        overhead|hpf|wrr|baseline) do_group "$1" ;;
        bench) do_bench ;;
    esac
}

{ echo "gpu-proof.sh $(date -u +%FT%TZ) commit ${XSCHED_LLAMA_REVISION:-$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')}"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || true; } >> "$S"

failed=()
if [ "${steps[*]}" = all ]; then
    # both builds at once (H200, 16 cores: 513 s for both, against 301 s + 290 s one after the other)
    do_synth &
    synth_pid=$!
    do_build_vanilla &
    vanilla_pid=$!
    do_build_patched || failed+=(build-patched)
    wait "$synth_pid" || failed+=(synth)
    do_smoke || failed+=(smoke)
    wait "$vanilla_pid" || failed+=(build-vanilla)
    for s in vanilla-driver wrr bench overhead hpf baseline; do run_one "$s" || failed+=("$s"); done
else
    for s in "${steps[@]}"; do run_one "$s" || failed+=("$s"); done
fi
echo "=== done $(date -u +%FT%TZ)${failed[*]:+, failed: ${failed[*]}}" >> "$S"
[ ${#failed[@]} -eq 0 ] || { echo "error: failed steps: ${failed[*]} (see $S)" >&2; exit 1; }
