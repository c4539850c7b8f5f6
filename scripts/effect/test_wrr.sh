#!/usr/bin/env bash
# test_wrr.sh: weighted round robin (WRR) fairness against a running xsched-llama / llama-server.
#
# Phases (tasks A and B generate the same number of tokens):
#   1. A alone                                   -> baseline latency
#   2. A and B started together, equal weights   -> both should finish at about the same time
# Fairness = |finish(A) - finish(B)| / mean(finish), finish times counted from the common start;
# the effect is present when it is below --max-gap (default 0.30, the original test's bound).
#
# A and B must reach two different instances of equal weight: WRR ignores priorities (they only
# route the requests), so start the server with two levels and the WRR policy, e.g.
#   xsched-llama serve --policy wrr --instances 1:1:1,0:1:1
# and keep the defaults --prio-a 1 --prio-b 0.
#
# Exit status: 0 effect present, 1 effect absent, 2 bad input or server error.
set -u

usage() {
    cat <<'EOF'
usage: test_wrr.sh [--url URL] [--tokens N] [--prio-a P] [--prio-b P] [--max-gap F] [--timeout S]
  --url URL      server base URL (default: $XSCHED_LLAMA_URL or http://127.0.0.1:8080)
  --tokens N     tokens each task generates (default 512)
  --prio-a P     priority of task A (default 1)
  --prio-b P     priority of task B (default 0)
  --max-gap F    largest finish-time gap / mean finish time accepted (default 0.30)
  --timeout S    seconds allowed per request (default 600)
EOF
}

XSCHED_LLAMA_DIE_STATUS=2  # bad input and server errors exit 2 (die, lib/common.sh)
# shellcheck source=scripts/lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh" || { echo "error: scripts/lib/common.sh is missing" >&2; exit 2; }

URL="${XSCHED_LLAMA_URL:-http://127.0.0.1:8080}"
TOKENS=512
PRIO_A=1
PRIO_B=0
MAX_GAP=0.30
TIMEOUT=600

while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --url|--tokens|--prio-a|--prio-b|--max-gap|--timeout)
            [ $# -ge 2 ] || die "$1 needs a value"
            case "$1" in
                --url) URL="$2" ;;
                --tokens) int_arg "$1" "$2"; TOKENS="$2" ;;
                --prio-a) int_arg "$1" "$2"; PRIO_A="$2" ;;
                --prio-b) int_arg "$1" "$2"; PRIO_B="$2" ;;
                --max-gap) num_arg "$1" "$2"; MAX_GAP="$2" ;;
                --timeout) num_arg "$1" "$2"; TIMEOUT="$2" ;;
            esac
            shift 2 ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
done
[ "$TOKENS" -ge 1 ] || die "--tokens must be at least 1"

# shellcheck source=scripts/lib/llama.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/llama.sh" || die "scripts/lib/llama.sh is missing"
effect_start "$PRIO_A" "$PRIO_B"

echo "server: $URL   tasks A (priority $PRIO_A) and B (priority $PRIO_B): $TOKENS tokens each"
request "$WORK/a1" "$PRIO_A" "$TOKENS" || exit 2
report_phase "1. A alone" "$WORK/a1"

T0="$(date +%s.%N)"
request "$WORK/a2" "$PRIO_A" "$TOKENS" & PA=$!
request "$WORK/b2" "$PRIO_B" "$TOKENS" & PB=$!
wait "$PA" || exit 2
wait "$PB" || exit 2
report_phase "2. A, together with B" "$WORK/a2"
report_phase "2. B, together with A" "$WORK/b2"

python3 - "$WORK" "$T0" "$MAX_GAP" <<'EOF'
import json, sys
work, t0, max_gap = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
m = {k: json.load(open(f"{work}/{k}.meta")) for k in ("a1", "a2", "b2")}
fa, fb = m["a2"]["t_end"] - t0, m["b2"]["t_end"] - t0
gap = abs(fa - fb) / ((fa + fb) / 2)
print(f"A finished after {fa:.3f} s, B after {fb:.3f} s; "
      f"A together / A alone = {m['a2']['latency'] / m['a1']['latency']:.3f}x")
print(f"fairness: finish-time gap / mean = {gap:.1%} (must be < {max_gap:.0%})")
if gap < max_gap:
    print("EFFECT PRESENT: A and B share the device fairly")
    sys.exit(0)
print("EFFECT ABSENT: one task finished much earlier than the other")
sys.exit(1)
EOF
