#!/usr/bin/env bash
# test_llamacpp.sh: priority preemption (HPF) against a running xsched-llama / llama-server.
#
# Phases (task A = the interactive request, task B = a long-running neighbour):
#   1. A alone, at the high priority                       -> baseline latency
#   2. A and B concurrently, both at the normal priority    -> A's slowdown without priority
#   3. A at the high priority while B runs at the normal one -> A's slowdown with priority
# The effect is present when priority removes at least --min-gain (default 50%) of the
# slowdown that phase 2 shows: (r3 - 1) <= min_gain * (r2 - 1), with r = latency / baseline.
#
# Start the server with a high and a normal instance; the normal one needs 2 slots for phase 2:
#   xsched-llama serve --instances 10:1:1,0:1:2          (or llama-server ... --instances 10:1:1,0:1:2)
# Against vanilla llama-server (priority is ignored) the script reports the effect as absent.
#
# Exit status: 0 effect present, 1 effect absent, 2 bad input or server error.
set -u

usage() {
    cat <<'EOF'
usage: test_llamacpp.sh [--url URL] [--tokens N] [--b-tokens N] [--high P] [--normal P]
                        [--min-gain F] [--reps N] [--timeout S]
  --url URL      server base URL (default: $XSCHED_LLAMA_URL or http://127.0.0.1:8080)
  --tokens N     tokens task A generates (default 256)
  --b-tokens N   tokens each task-B request generates (default 8 x --tokens)
  --high P       priority of task A in phases 1 and 3 (default 10)
  --normal P     priority of task B, and of A in phase 2 (default 0)
  --min-gain F   share of the phase-2 slowdown priority must remove (default 0.5)
  --reps N       task-A requests per phase, the median latency counts (default 1)
  --timeout S    seconds allowed per request (default 600)
EOF
}

XSCHED_LLAMA_DIE_STATUS=2  # bad input and server errors exit 2 (die, lib/common.sh)
# shellcheck source=scripts/lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh" || { echo "error: scripts/lib/common.sh is missing" >&2; exit 2; }

URL="${XSCHED_LLAMA_URL:-http://127.0.0.1:8080}"
TOKENS=256
B_TOKENS=""
HIGH=10
NORMAL=0
MIN_GAIN=0.5
REPS=1
TIMEOUT=600

while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --url|--tokens|--b-tokens|--high|--normal|--min-gain|--reps|--timeout)
            [ $# -ge 2 ] || die "$1 needs a value"
            case "$1" in
                --url) URL="$2" ;;
                --tokens) int_arg "$1" "$2"; TOKENS="$2" ;;
                --b-tokens) int_arg "$1" "$2"; B_TOKENS="$2" ;;
                --high) int_arg "$1" "$2"; HIGH="$2" ;;
                --normal) int_arg "$1" "$2"; NORMAL="$2" ;;
                --min-gain) num_arg "$1" "$2"; MIN_GAIN="$2" ;;
                --reps) int_arg "$1" "$2"; REPS="$2" ;;
                --timeout) num_arg "$1" "$2"; TIMEOUT="$2" ;;
            esac
            shift 2 ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
done
[ "$TOKENS" -ge 1 ] || die "--tokens must be at least 1"
[ "$REPS" -ge 1 ] || die "--reps must be at least 1"
B_TOKENS="${B_TOKENS:-$((TOKENS * 8))}"
[ "$B_TOKENS" -ge 1 ] || die "--b-tokens must be at least 1"

# shellcheck source=scripts/lib/llama.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/llama.sh" || die "scripts/lib/llama.sh is missing"
effect_start "$HIGH" "$NORMAL"

echo "server: $URL   task A: $TOKENS tokens ($REPS per phase, median)   task B: $B_TOKENS tokens per request"
measure "$WORK/a1" "$HIGH" "$TOKENS" || exit 2
report_phase "1. A alone (priority $HIGH)" "$WORK/a1"

phase_with_b() {  # phase_with_b OUT A_PRIORITY
    start_b "$WORK/b-$1" "$NORMAL" "$B_TOKENS" || exit 2
    measure "$WORK/$1" "$2" "$TOKENS" || exit 2
    stop_all
}
phase_with_b a2 "$NORMAL"
report_phase "2. A with B, same priority ($NORMAL)" "$WORK/a2"
phase_with_b a3 "$HIGH"
report_phase "3. A (priority $HIGH) with B (priority $NORMAL)" "$WORK/a3"

python3 - "$WORK" "$MIN_GAIN" <<'EOF'
import json, sys
work, min_gain = sys.argv[1], float(sys.argv[2])
lat = {k: json.load(open(f"{work}/{k}.meta"))["latency"] for k in ("a1", "a2", "a3")}
r2, r3 = lat["a2"] / lat["a1"], lat["a3"] / lat["a1"]
print(f"slowdown of A: same priority {r2:.3f}x, high priority {r3:.3f}x (baseline {lat['a1']:.3f} s)")
if r2 < 1.02:
    print(f"EFFECT ABSENT: B did not slow A down at the same priority ({r2:.3f}x); nothing to preempt "
          "(use more tokens, or a busier server)")
    sys.exit(1)
removed = (r2 - r3) / (r2 - 1)
print(f"priority removed {removed:.0%} of the slowdown (needed: {min_gain:.0%})")
if r3 - 1 <= min_gain * (r2 - 1):
    print("EFFECT PRESENT: the high-priority request preempts the normal one")
    sys.exit(0)
print("EFFECT ABSENT: the high-priority request is slowed down like an equal one")
sys.exit(1)
EOF
