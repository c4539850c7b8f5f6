# shellcheck shell=bash
# common.sh: what every script shares (sourced, not run): die, need, the toolkit's cache directory, build roots.
# A script sets XSCHED_LLAMA_DIE_STATUS before sourcing when its errors are not exit 1 (the effect scripts: 2).

# die MESSAGE...: one line "error: MESSAGE" on stderr, then exit (status $XSCHED_LLAMA_DIE_STATUS, default 1).
die() { echo "error: $*" >&2; exit "${XSCHED_LLAMA_DIE_STATUS:-1}"; }

# int_arg OPTION VALUE / num_arg OPTION VALUE: die unless VALUE is an integer / a non-negative decimal number.
int_arg() { [[ "$2" =~ ^-?[0-9]+$ ]] || die "$1 needs an integer, not '$2'"; }
num_arg() { [[ "$2" =~ ^[0-9]+([.][0-9]+)?$ ]] || die "$1 needs a number, not '$2'"; }

# need PROGRAM: dies unless PROGRAM is on PATH.
need() { command -v "$1" >/dev/null 2>&1 || die "'$1' is required but not installed"; }

# toolkit_cache: the xsched-llama cache directory, as xsched_llama/paths.py resolves it (XSCHED_LLAMA_CACHE, else
# $XDG_CACHE_HOME/xsched-llama, else ~/.cache/xsched-llama).
toolkit_cache() {
    echo "${XSCHED_LLAMA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/xsched-llama}"
}

# build_root BUILD-OPTION...: the root of the build the options name (<cache>/builds/<variant>: src/, build/), from
# `xsched-llama build --json` (a no-op when it is up to date); dies when the build fails.
build_root() {
    local json
    json=$(xsched-llama build "$@" --json) || die "xsched-llama build $* failed"
    python3 -c 'import json, os, sys; print(os.path.dirname(json.loads(sys.stdin.read())["build_dir"]))' <<<"$json" \
        || die "xsched-llama build --json printed no build_dir"
}
