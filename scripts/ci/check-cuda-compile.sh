#!/usr/bin/env bash
# check-cuda-compile.sh: compile the CUDA translation units that the patch
# series changes (ggml-cuda.cu, and our own xqueue.cu) with nvcc for sm_90,
# on a machine without a GPU and without the cuBLAS libraries: the cuBLAS
# headers come from the nvidia-cublas wheel on PyPI, the libraries are empty
# stubs (nothing is linked). Catches a patch that breaks the CUDA build before
# the GPU machine is involved.
#
# usage: scripts/ci/check-cuda-compile.sh [--src LLAMA_TREE] [--work DIR] [--also-off] [--jobs N]
#   --src       pristine (pruned) llama.cpp tree at the pinned commit
#               (default: $XSCHED_LLAMA_SRC, else the toolkit's: `xsched-llama fetch`, cached)
#   --work      scratch directory (default: /tmp/xsched-cuda-check); reused: a second run is incremental
#   --also-off  also compile ggml-cuda.cu with GGML_XQUEUE=OFF (the upstream-equivalent path)
# environment: XSCHED_LLAMA_CACHE (wheel cache; default $XDG_CACHE_HOME/xsched-llama or ~/.cache/xsched-llama),
#              XSCHED_LLAMA_CUBLAS_INCLUDE (use these cuBLAS headers instead of the wheel)
# exit status: 0 compiles, 1 does not (or a tool is missing), 2 bad arguments, 3 the cuBLAS wheel could not be downloaded
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=scripts/lib/common.sh
. "$repo/scripts/lib/common.sh"
# shellcheck source=scripts/lib/cuda.sh
. "$repo/scripts/lib/cuda.sh"
src=${XSCHED_LLAMA_SRC:-}
work=/tmp/xsched-cuda-check
also_off=0
jobs=2
while [ $# -gt 0 ]; do
    case "$1" in
        --src) src=$2; shift 2 ;;
        --work) work=$2; shift 2 ;;
        --also-off) also_off=1; shift ;;
        --jobs) jobs=$2; shift 2 ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

t_start=$(date +%s)
step() { echo "== $* ($(( $(date +%s) - t_start )) s)"; }

command -v nvcc >/dev/null || die "nvcc not found (the CUDA toolkit's compiler is needed)"
command -v cmake >/dev/null || die "cmake not found"
command -v ninja >/dev/null || die "ninja not found"
if [ -z "$src" ]; then
    src=$(xsched-llama fetch --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["tree"])') \
        || die "no --src given and xsched-llama fetch failed"
fi
[ -f "$src/ggml/src/ggml-cuda/ggml-cuda.cu" ] || die "$src is not a llama.cpp tree (set --src or XSCHED_LLAMA_SRC)"
[ -f "$repo/patches/series" ] || die "$repo/patches/series not found"

cuda_ver=$(cuda_version)

# 1. cuBLAS headers (from the nvidia-cublas wheel matching the CUDA major.minor)
if [ -n "${XSCHED_LLAMA_CUBLAS_INCLUDE:-}" ]; then
    inc=$XSCHED_LLAMA_CUBLAS_INCLUDE
else
    cache=$(toolkit_cache)/cublas-$cuda_ver
    inc=$cache/include
    if [ ! -f "$inc/cublas_v2.h" ]; then
        step "downloading nvidia-cublas==$cuda_ver.* (headers only are kept)"
        cublas_extract "$cuda_ver" "$cache" include
    fi
fi
[ -f "$inc/cublas_v2.h" ] || die "no cublas_v2.h in $inc"

# 2. stub libraries so that FindCUDAToolkit defines CUDA::cublas and CUDA::cuda_driver (nothing is linked)
mkdir -p "$work/stub"
for l in cublas cublasLt cuda; do
    [ -f "$work/stub/lib$l.so" ] || cc -shared -o "$work/stub/lib$l.so" -x c /dev/null
done

# 3. the xsched core (headers + CMake package)
step "building the xsched core"
# a build dir configured from another checkout (CI clones elsewhere) cannot be reused: CMake refuses it
if [ -f "$work/xsched-build/CMakeCache.txt" ] && \
   ! grep -qxF "CMAKE_HOME_DIRECTORY:INTERNAL=$repo/native/xsched" "$work/xsched-build/CMakeCache.txt"; then
    rm -rf "$work/xsched-build" "$work/xsched"
fi
cmake -S "$repo/native/xsched" -B "$work/xsched-build" -G Ninja -DCMAKE_BUILD_TYPE=Release >"$work/xsched.log" 2>&1 \
    && cmake --build "$work/xsched-build" -j "$jobs" >>"$work/xsched.log" 2>&1 \
    && cmake --install "$work/xsched-build" --prefix "$work/xsched" >>"$work/xsched.log" 2>&1 \
    || { tail -20 "$work/xsched.log"; die "the xsched core did not build (log: $work/xsched.log)"; }

# 4. the patched tree: overlay first, then the series in order
step "patching a copy of $src"
rm -rf "$work/src" && mkdir -p "$work/src"
(cd "$src" && tar --exclude=.git -cf - .) | (cd "$work/src" && tar -xf -)
cp -r "$repo/patches/overlay/." "$work/src/"
while read -r p; do
    case "$p" in ''|\#*) continue ;; esac
    (cd "$work/src" && git apply --whitespace=nowarn "$repo/patches/$p") || die "patch $p does not apply"
done < "$repo/patches/series"

# 5. configure and compile the changed CUDA objects
compile() { # compile BUILD_DIR XQUEUE(ON|OFF) OBJECTS...
    local b=$1 xq=$2; shift 2
    step "configuring $b (GGML_XQUEUE=$xq)"
    cmake -S "$work/src" -B "$b" -G Ninja -DCMAKE_BUILD_TYPE=Release \
        -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DGGML_NATIVE=OFF -DGGML_CUDA_NCCL=OFF \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_SERVER=OFF \
        -DLLAMA_OPENSSL=OFF -DBUILD_SHARED_LIBS=OFF \
        -DCUDA_cublas_LIBRARY="$work/stub/libcublas.so" -DCUDA_cublasLt_LIBRARY="$work/stub/libcublasLt.so" \
        -DCUDA_cuda_driver_LIBRARY="$work/stub/libcuda.so" \
        -DCMAKE_CUDA_FLAGS="-I$inc" -DCMAKE_CXX_FLAGS="-I$inc" \
        -DGGML_XQUEUE=$xq -DXSched_DIR="$work/xsched/lib/cmake/XSched" >"$b.cfg.log" 2>&1 \
        || { tail -30 "$b.cfg.log"; die "configure failed (log: $b.cfg.log)"; }
    step "compiling $* (GGML_XQUEUE=$xq)"
    ninja -C "$b" -j "$jobs" "$@" || die "CUDA compile failed (GGML_XQUEUE=$xq)"
}
obj=ggml/src/ggml-cuda/CMakeFiles/ggml-cuda.dir
compile "$work/build-on" ON "$obj/ggml-cuda.cu.o" "$obj/xqueue.cu.o"
if [ "$also_off" = 1 ]; then
    compile "$work/build-off" OFF "$obj/ggml-cuda.cu.o" "$obj/xqueue.cu.o"
fi
step "ok: the patched CUDA translation units compile (CUDA $cuda_ver, sm_90)"
