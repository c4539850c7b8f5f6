# shellcheck shell=bash
# cuda.sh: helpers shared by ci/check-cuda-compile.sh and gpu/cross-build-cuda.sh (sourced, not run).
# Expects lib/common.sh (die, toolkit_cache) sourced before it.

# cuda_version: major.minor of the nvcc on PATH.
cuda_version() {
    local v
    v=$(nvcc --version | sed -n 's/.*release \([0-9]*\)\.\([0-9]*\).*/\1.\2/p')
    [ -n "$v" ] || die "cannot read the CUDA version from nvcc --version"
    echo "$v"
}

# cublas_extract VERSION DEST WHAT: downloads the nvidia-cublas==VERSION.* wheel from PyPI into DEST and
# keeps its headers (WHAT=include) or its headers and libraries (WHAT=all) as DEST/include and DEST/lib;
# the wheel (~420 MB) is deleted afterwards. Exits 3 when the download fails (no network).
cublas_extract() {
    local ver=$1 dest=$2 what=$3 whl
    mkdir -p "$dest"
    if ! ls "$dest"/nvidia_cublas-*.whl >/dev/null 2>&1; then
        python3 -m pip download -q --no-deps --only-binary=:all: "nvidia-cublas==$ver.*" -d "$dest" \
            || { echo "error: pip download nvidia-cublas==$ver.* failed (no network?)" >&2; exit 3; }
    fi
    whl=$(ls "$dest"/nvidia_cublas-*.whl | head -1)
    rm -rf "$dest/x" && mkdir -p "$dest/x"
    python3 - "$whl" "$dest/x" "$what" <<'PY' || die "cannot unpack $whl"
import sys, zipfile
whl, out, what = sys.argv[1:]
with zipfile.ZipFile(whl) as z:
    for n in z.namelist():
        if ("/include/" in n and n.endswith(".h")) or (what == "all" and "/lib/" in n and ".so" in n):
            z.extract(n, out)
PY
    local inc
    inc=$(dirname "$(find "$dest/x" -name cublas_v2.h | head -1)")
    rm -rf "$dest/include" && mv "$inc" "$dest/include"
    if [ "$what" = all ]; then
        rm -rf "${dest:?}/lib" && mv "$(dirname "$inc")/lib" "$dest/lib"
        local so
        for so in "$dest"/lib/lib*.so.*; do ln -sf "$(basename "$so")" "${so%%.so.*}.so"; done
    fi
    rm -rf "$dest/x" "$whl"
}
