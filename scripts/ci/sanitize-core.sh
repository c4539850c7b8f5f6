#!/usr/bin/env bash
# sanitize-core.sh: build native/xsched with ThreadSanitizer and with
# AddressSanitizer (+UBSan-free, gcc) and run its CTest suite under each.
# Usage: scripts/ci/sanitize-core.sh [thread|address]...   (default: both)
# Env: XSCHED_SANITIZE_BUILD_DIR (default /tmp/xsched-sanitize), XSCHED_LLAMA_JOBS (default 2).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build_root="${XSCHED_SANITIZE_BUILD_DIR:-/tmp/xsched-sanitize}"
jobs="${XSCHED_LLAMA_JOBS:-2}"
kinds=("$@")
[ ${#kinds[@]} -eq 0 ] && kinds=(thread address)

gen=()
command -v ninja >/dev/null 2>&1 && gen=(-G Ninja)
launcher=()
command -v ccache >/dev/null 2>&1 && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)

for kind in "${kinds[@]}"; do
    case "$kind" in
        thread|address) ;;
        *) echo "sanitize-core.sh: unknown sanitizer '$kind' (allowed: thread, address)" >&2; exit 2 ;;
    esac
    dir="$build_root/$kind"
    # A build dir configured from another checkout (CI clones elsewhere) cannot be reused: CMake refuses it.
    if [ -f "$dir/CMakeCache.txt" ] && \
       ! grep -qxF "CMAKE_HOME_DIRECTORY:INTERNAL=$root/native/xsched" "$dir/CMakeCache.txt"; then
        echo "+ [$kind] $dir was configured from another source tree: starting afresh"
        rm -rf "$dir"
    fi
    echo "+ [$kind] configure + build in $dir"
    # The CUDA platform is left out: the sanitizers check the scheduling core.
    cmake -S "$root/native/xsched" -B "$dir" "${gen[@]}" "${launcher[@]}" \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo -DXSCHED_BUILD_TESTS=ON -DXSCHED_WITH_CUDA=OFF \
        -DXSCHED_SANITIZE="$kind" >/dev/null
    cmake --build "$dir" -j "$jobs"
    echo "+ [$kind] ctest"
    TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
    ASAN_OPTIONS="detect_leaks=1:abort_on_error=0" \
        ctest --test-dir "$dir" --output-on-failure -j "$jobs" --timeout 300
done
echo "sanitize-core.sh: all sanitizer runs passed (${kinds[*]})"
