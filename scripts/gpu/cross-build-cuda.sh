#!/usr/bin/env bash
# cross-build-cuda.sh: build the CUDA llama-server (patched, and with --vanilla the vanilla one too) on a
# machine without a GPU, for carrying to a GPU machine that has no network or whose time is scarce.
# cuBLAS comes from the nvidia-cublas wheel on PyPI, libcuda.so.1 is a link-time stub generated from
# the toolkit's cuda.h (the GPU machine's driver provides the real one). Each binary is stripped and
# xz-compressed (an 82 MB sm_90 llama-server becomes ~42 MB).
#
# usage: scripts/gpu/cross-build-cuda.sh OUTDIR [--vanilla | --vanilla-only] [--arch SM] [--jobs N]
#   OUTDIR     gets patched-server.xz (vanilla-server.xz), libxsched.so, native.tar (the installed core) and
#              manifest.txt (sha256 of each uncompressed binary, the commit, the CUDA version)
#   --vanilla  also build the unpatched commit
#   --vanilla-only  build only the unpatched commit (it does not change with the patches)
#   --arch     CMAKE_CUDA_ARCHITECTURES (default 90)
#   --jobs     parallel jobs (default: cores)
# environment: XSCHED_LLAMA_CACHE (the toolkit's cache; the cuBLAS headers and libraries, ~600 MB, are kept
#              in <cache>/cublas-<ver>-full), XSCHED_LLAMA_PATCHES, XSCHED_LLAMA_SOURCE (as for xsched-llama build)
# On the GPU machine (docs/benchmarks.md, "Device set-up"): unpack with
#   python3 -c "import lzma,shutil;shutil.copyfileobj(lzma.open('patched-server.xz'),open('patched-server','wb'))"
# and run with LD_LIBRARY_PATH=<dir of libxsched.so>:<dir of libcublas.so.13>.
# exit status: 0 built, 1 failed (or a tool is missing), 2 bad arguments, 3 the cuBLAS wheel could not be downloaded
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=scripts/lib/common.sh
. "$repo/scripts/lib/common.sh"
usage() { echo "error: $* (usage: scripts/gpu/cross-build-cuda.sh OUTDIR [--vanilla | --vanilla-only] [--arch SM] [--jobs N])" >&2; exit 2; }

out=""
vanilla=0
arch=90
jobs=$(nproc)
while [ $# -gt 0 ]; do
    case "$1" in
        --vanilla) vanilla=1; shift ;;
        --vanilla-only) vanilla=2; shift ;;
        --arch) [ $# -ge 2 ] || usage "--arch needs a value"; arch=$2; shift 2 ;;
        --jobs) [ $# -ge 2 ] || usage "--jobs needs a value"; jobs=$2; shift 2 ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        -*) usage "unknown option $1" ;;
        *) [ -z "$out" ] || usage "one OUTDIR only (got $out and $1)"; out=$1; shift ;;
    esac
done
[ -n "$out" ] || usage "OUTDIR is required"
[[ "$arch" =~ ^[0-9]+[a-z]?$ ]] || usage "--arch $arch: expected an SM number such as 90"
[[ "$jobs" =~ ^[1-9][0-9]*$ ]] || usage "--jobs $jobs: expected a positive integer"

for t in nvcc cc strip xz python3 xsched-llama; do
    command -v "$t" >/dev/null || die "$t not found"
done
# shellcheck source=scripts/lib/cuda.sh
. "$repo/scripts/lib/cuda.sh"
ver=$(cuda_version)
cache=$(toolkit_cache)

# 1. cuBLAS headers and libraries
cublas=$cache/cublas-$ver-full
if [ ! -f "$cublas/lib/libcublas.so" ] || [ ! -f "$cublas/include/cublas_v2.h" ]; then
    echo "== downloading nvidia-cublas==$ver.* (headers and libraries are kept in $cublas)"
    cublas_extract "$ver" "$cublas" all
fi

# 2. a link-time libcuda.so.1 exporting every cu* entry point of the toolkit's cuda.h
# (nvcc's own include directory: also right when nvcc on PATH is a wrapper script)
cuda_h=$(nvcc -v -x cu /dev/null -E 2>&1 | sed -n 's/.*INCLUDES="-I\([^"]*\)".*/\1/p' | head -1)/cuda.h
[ -f "$cuda_h" ] || die "cannot find the CUDA toolkit's cuda.h (looked in nvcc's include directory: $cuda_h)"
stub=$cache/cuda-stub-$ver
if [ ! -f "$stub/libcuda.so" ]; then
    mkdir -p "$stub"
    cc -E -P -x c "$cuda_h" -I"$(dirname "$cuda_h")" | grep -oE '\bcu[A-Z][A-Za-z0-9_]*\s*\(' | sed 's/\s*($//' \
        | sort -u | sed 's/.*/void &(void) {}/' > "$stub/stub.c"
    [ -s "$stub/stub.c" ] || die "no cu* functions found in $cuda_h"
    cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$stub/libcuda.so" "$stub/stub.c" || die "cannot build the libcuda stub"
fi

# 3. the builds (the toolkit's cache and incremental rebuilds, as on a GPU machine)
defs=(-D "CUDA_cublas_LIBRARY=$cublas/lib/libcublas.so" -D "CUDA_cublasLt_LIBRARY=$cublas/lib/libcublasLt.so"
      -D "CUDA_cuda_driver_LIBRARY=$stub/libcuda.so"
      -D "CMAKE_CUDA_FLAGS=-I$cublas/include" -D "CMAKE_CXX_FLAGS=-I$cublas/include")
mkdir -p "$out"
out=$(cd "$out" && pwd)
trap 'rm -f "$out"/*.tmp' EXIT  # a failed run leaves no half-written file behind
manifest=$out/manifest.txt.tmp
{ echo "cross-build-cuda.sh $(date -u +%FT%TZ) commit $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?')"
  so=$(basename "$(compgen -G "$cublas/lib/libcublas.so.*" | head -1)")
  echo "CUDA $ver, sm_$arch, cuBLAS $so"; } > "$manifest"
variants=(patched)
[ "$vanilla" = 1 ] && variants+=(vanilla)
[ "$vanilla" = 2 ] && variants=(vanilla)
for v in "${variants[@]}"; do
    flag=()
    [ "$v" = vanilla ] && flag=(--vanilla)
    echo "== building the $v CUDA llama-server (sm_$arch, $jobs jobs)"
    bin=$(xsched-llama build "${flag[@]}" --cuda --cuda-arch "$arch" -j "$jobs" --target llama-server "${defs[@]}" --json \
          | python3 -c 'import json, sys; print(json.load(sys.stdin)["binaries"]["llama-server"])') || die "the $v build failed"
    [ -x "$bin" ] || die "the $v build reported $bin, which does not exist"
    strip -o "$out/$v-server.tmp" "$bin"
    echo "$v-server sha256 $(sha256sum "$out/$v-server.tmp" | cut -d' ' -f1) (stripped, uncompressed)" >> "$manifest"
    xz -T0 -6 -c "$out/$v-server.tmp" > "$out/$v-server.xz.tmp" && mv "$out/$v-server.xz.tmp" "$out/$v-server.xz"
    rm -f "$out/$v-server.tmp"
done
lib=$(python3 -c 'import xsched_llama.native as n; print(n.lib_dir())' 2>/dev/null)/libxsched.so \
    || die "cannot locate libxsched.so of the installed toolkit"
[ -f "$lib" ] || die "no $lib"
cp "$lib" "$out/libxsched.so"
# the core as installed (xschedd, the library, the headers): scripts/gpu/gpu-carried.sh setup unpacks it where the
# checkout's toolkit looks when nothing is pip-installed there (`xsched-llama scheduler` needs xschedd)
tar -C "$(dirname "$(dirname "$(dirname "$lib")")")" -cf "$out/native.tar.tmp" _native && mv "$out/native.tar.tmp" "$out/native.tar"
mv "$manifest" "$out/manifest.txt"
ls -l "$out"
