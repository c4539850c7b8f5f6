#!/usr/bin/env bash
# gpu-carried.sh: run the benchmarks on a GPU machine that has no network, with CUDA binaries built elsewhere
# (scripts/gpu/cross-build-cuda.sh) and carried to it, in calls of at most a few minutes each (a job outlives the call
# that started it, as long as the machine stays up).
#
# usage (repository root):
#   scripts/gpu/gpu-carried.sh setup CARRY [SHAPE...]   unpack CARRY/*.xz and CARRY/libxsched.so into $GC_DIR, install
#                                                   CARRY/*.whl into $GC_DIR/site, CARRY/native.tar (the core as
#                                                   installed) into xsched_llama/_native, synthesize each SHAPE
#                                                   (qwen3-8b, qwen3-0.6b, ...) with CARRY/ggml-vocab-qwen2.gguf
#   scripts/gpu/gpu-carried.sh start NAME -- CMD...     run CMD in the background (setsid) in the environment below;
#                                                   log in $GC_DIR/jobs/NAME.log, exit status in NAME.rc
#   scripts/gpu/gpu-carried.sh stop NAME                stop a job (its whole process group); `wait` counts it as ended
#   scripts/gpu/gpu-carried.sh wait SECONDS [OUT]       wait until every job has ended or SECONDS passed; print each
#                                                   job's state, log tail and the bench result lines of its log;
#                                                   with OUT, pack $GC_DIR/results and the job logs into
#                                                   OUT/results.tar.xz, the reports alone into reports.tar.xz (do
#                                                   it in every call: the machine and its /tmp go 30 s after a
#                                                   call ends)
#   scripts/gpu/gpu-carried.sh env                      print the environment (source it: eval "$(... env)")
# In a job's environment: PYTHONPATH (the repository and the wheels), LD_LIBRARY_PATH (libxsched.so, the CUDA
# runtime), VANILLA=$GC_DIR/vanilla-server, PATCHED=$GC_DIR/patched-server, MODELS=$GC_DIR/models,
# RESULTS=$GC_DIR/results; `python3 -m xsched_llama bench --cuda --vanilla-server "$VANILLA" --patched-server
# "$PATCHED" --model "$MODELS/synth-qwen3-8b-q8_0.gguf" --out "$RESULTS/x"` is the typical job.
# environment: GC_DIR (default /tmp/gc).
# exit status: 0 ok, 1 a step failed, 2 bad arguments.
set -uo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=scripts/lib/common.sh
. "$repo/scripts/lib/common.sh"
dir=${GC_DIR:-/tmp/gc}
usage() { echo "error: $* (see scripts/gpu/gpu-carried.sh --help)" >&2; exit 2; }

job_env() {
    local cudart
    cudart=$(dirname "$(find /usr/local/cuda*/ -name 'libcudart.so*' 2>/dev/null | head -1)" 2>/dev/null)
    echo "export PYTHONPATH=$repo:$dir/site PYTHONUNBUFFERED=1"
    echo "export LD_LIBRARY_PATH=$dir:${cudart:-/usr/local/cuda/lib64}\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
    echo "export VANILLA=$dir/vanilla-server PATCHED=$dir/patched-server MODELS=$dir/models RESULTS=$dir/results"
}

cmd=${1:-}
[ -n "$cmd" ] || usage "a command is required"
shift
case "$cmd" in
-h|--help)
    sed -n '2,26p' "$0"
    ;;
env)
    job_env
    ;;
setup)
    [ $# -ge 1 ] || usage "setup needs the carried directory"
    carry=$1
    shift
    [ -d "$carry" ] || die "no directory $carry"
    mkdir -p "$dir/site" "$dir/models" "$dir/results" "$dir/jobs"
    if compgen -G "$carry/*.whl" > /dev/null; then
        python3 -m pip install -q --no-index --no-deps --no-compile --target "$dir/site" "$carry"/*.whl \
            || die "cannot install the wheels of $carry"
    fi
    for f in "$carry"/*.xz; do
        [ -e "$f" ] || continue
        b=$(basename "$f" .xz)
        python3 -c "import lzma,shutil,sys;shutil.copyfileobj(lzma.open(sys.argv[1]),open(sys.argv[2],'wb'))" \
            "$f" "$dir/$b.tmp" && chmod +x "$dir/$b.tmp" && mv "$dir/$b.tmp" "$dir/$b" || die "cannot unpack $f"
        echo "unpacked $dir/$b"
    done
    [ -f "$carry/libxsched.so" ] && cp "$carry/libxsched.so" "$dir/"
    # the installed core (xsched_llama/_native: xschedd, libxsched.so, headers) where the checkout's toolkit looks
    # for it when nothing is pip-installed (`xsched-llama scheduler` needs xschedd)
    if [ -f "$carry/native.tar" ]; then
        rm -rf "$repo/xsched_llama/_native" && tar -C "$repo/xsched_llama" -xf "$carry/native.tar" \
            || die "cannot unpack $carry/native.tar"
    fi
    eval "$(job_env)"
    for shape in "$@"; do
        m=$MODELS/synth-$shape-q8_0.gguf
        [ -f "$m" ] && continue
        [ -f "$carry/ggml-vocab-qwen2.gguf" ] || die "synthesizing needs $carry/ggml-vocab-qwen2.gguf"
        python3 -c "from pathlib import Path;from xsched_llama.synth import synth;synth('$shape',Path('$m'),Path('$carry/ggml-vocab-qwen2.gguf'))" \
            || die "cannot synthesize $shape"
        echo "model $m"
    done
    ;;
start)
    [ $# -ge 3 ] && [ "$2" = -- ] || usage "start NAME -- CMD..."
    name=$1
    shift 2
    [[ "$name" =~ ^[A-Za-z0-9._-]+$ ]] || usage "job name $name: letters, digits, . _ - only"
    mkdir -p "$dir/jobs" "$dir/results"
    rm -f "$dir/jobs/$name.rc"
    printf '%q ' "$@" > "$dir/jobs/$name.cmd"
    setsid nohup bash -c "$(job_env); cd '$repo'; \"\$@\" > '$dir/jobs/$name.log' 2>&1; echo \$? > '$dir/jobs/$name.rc'" \
        _ "$@" < /dev/null > /dev/null 2>&1 &
    echo $! > "$dir/jobs/$name.pid"
    echo "started $name: $*"
    ;;
stop)
    [ $# -eq 1 ] || usage "stop NAME"
    name=$1
    [ -f "$dir/jobs/$name.pid" ] || die "no job $name"
    if [ ! -f "$dir/jobs/$name.rc" ]; then
        # the job is a session of its own (setsid): its process group goes, and `wait` sees it ended
        kill -TERM -- "-$(cat "$dir/jobs/$name.pid")" 2>/dev/null
        echo 143 > "$dir/jobs/$name.rc"
    fi
    echo "stopped $name"
    ;;
wait)
    [ $# -ge 1 ] || usage "wait needs SECONDS"
    [[ "$1" =~ ^[0-9]+$ ]] || usage "wait $1: expected seconds"
    end=$(( $(date +%s) + $1 ))
    out=${2:-}
    while :; do
        running=0
        for c in "$dir"/jobs/*.cmd; do
            [ -e "$c" ] || continue
            [ -f "${c%.cmd}.rc" ] || running=$((running + 1))
        done
        [ "$running" -eq 0 ] || [ "$(date +%s)" -ge "$end" ] && break
        sleep 5
    done
    status=0
    for c in "$dir"/jobs/*.cmd; do
        [ -e "$c" ] || continue
        n=$(basename "$c" .cmd)
        if [ -f "$dir/jobs/$n.rc" ]; then
            rc=$(cat "$dir/jobs/$n.rc")
            echo "== $n: exit $rc"
            [ "$rc" = 0 ] || status=1
        else
            echo "== $n: running"
        fi
        tail -n 6 "$dir/jobs/$n.log" 2>/dev/null | sed 's/^/   /'
        # the bench's result tables (lines headed by a build), so that the figures come back in the call's
        # output even when no file does
        grep -E '^  (vanilla|patched)[a-z-]* |  (pass|FAIL)$' "$dir/jobs/$n.log" 2>/dev/null | sed 's/^/   | /'
    done
    if [ -n "$out" ]; then
        mkdir -p "$out"
        tar -C "$dir" -cJf "$out/results.tar.xz" results jobs 2>/dev/null || echo "warning: packing failed" >&2
        # the reports, plots and job logs alone as well: a call brings back no file over 16 MiB, which the servers'
        # logs (trace lines) can make the whole archive
        (cd "$dir" && find results -maxdepth 2 \( -name '*.json' -o -name '*.png' -o -name '*.csv' \) -print0 \
            | tar -cJf "$out/reports.tar.xz" --null -T - jobs) 2>/dev/null || echo "warning: packing the reports failed" >&2
        ls -l "$out/results.tar.xz" "$out/reports.tar.xz"
    fi
    exit $status
    ;;
*)
    usage "unknown command $cmd"
    ;;
esac
