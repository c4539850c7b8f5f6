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
#   xsched-llama serve --xsched-policy WRR --instances 1:1:1,0:1:1
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

die() { echo "error: $*" >&2; exit 2; }

URL="${XSCHED_LLAMA_URL:-http://127.0.0.1:8080}"
TOKENS=512
PRIO_A=1
PRIO_B=0
MAX_GAP=0.30
TIMEOUT=600

int_arg() { [[ "$2" =~ ^-?[0-9]+$ ]] || die "$1 needs an integer, not '$2'"; }
num_arg() { [[ "$2" =~ ^[0-9]+([.][0-9]+)?$ ]] || die "$1 needs a number, not '$2'"; }

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
URL="${URL%/}"

# ---- helpers (the same block is in test_llamacpp.sh and test_wrr.sh) ----
PROMPT="Write a long story about a lighthouse keeper who counts the ships that pass at night."
B_PIDS=()

need() { command -v "$1" >/dev/null 2>&1 || die "'$1' is required but not installed"; }

check_server() {  # check_server URL: one-line error and exit 2 unless /health answers 200
    need curl; need python3
    local out code
    out="$(mktemp)"
    code="$(curl -sS -o "$out" -w '%{http_code}' --max-time 10 "$1/health" 2>"$out.err")"
    local rc=$?
    if [ $rc -ne 0 ]; then
        local why; why="$(head -n1 "$out.err" | sed 's/^curl: ([0-9]*) //')"
        rm -f "$out" "$out.err"
        die "no llama-server answering at $1 (${why:-curl exit $rc})"
    fi
    rm -f "$out" "$out.err"
    [ "$code" = 200 ] || die "$1/health answered HTTP $code: not a ready llama-server"
}

body() {  # body PRIORITY N_PREDICT STREAM
    printf '{"prompt":"%s","n_predict":%d,"ignore_eos":true,"temperature":0,"cache_prompt":false,"priority":%d,"stream":%s}' \
        "$PROMPT" "$2" "$1" "$3"
}

request() {  # request OUT PRIORITY N_PREDICT: one request; OUT.json (answer), OUT.meta (times, tokens)
    local out="$1" t0 t1 code
    t0="$(date +%s.%N)"
    code="$(curl -sS --max-time "$TIMEOUT" -o "$out.json" -w '%{http_code}' -H 'Content-Type: application/json' \
        -d "$(body "$2" "$3" false)" "$URL/completion" 2>"$out.err")" \
        || { echo "error: request to $URL/completion failed: $(head -n1 "$out.err")" >&2; return 1; }
    t1="$(date +%s.%N)"
    python3 - "$out" "$code" "$t0" "$t1" <<'PY' || return 1
import json, sys
out, code, t0, t1 = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
raw = open(out + ".json", "rb").read()
try:
    doc = json.loads(raw)
except ValueError:
    doc = None
if code != "200" or not isinstance(doc, dict):
    msg = doc.get("error", {}).get("message", doc) if isinstance(doc, dict) else raw[:200].decode(errors="replace")
    print(f"error: {out.rsplit('/', 1)[-1]}: HTTP {code}: {msg}", file=sys.stderr)
    sys.exit(1)
tokens = int(doc.get("tokens_predicted", 0))
json.dump({"t_send": t0, "t_end": t1, "latency": t1 - t0, "tokens": tokens}, open(out + ".meta", "w"))
PY
}

start_b() {  # start_b OUT PRIORITY N_PREDICT: streamed neighbour in the background; returns once it generates
    local out="$1" waited=0
    curl -sSN --max-time "$TIMEOUT" -H 'Content-Type: application/json' -d "$(body "$2" "$3" true)" \
        "$URL/completion" >"$out.stream" 2>"$out.err" &
    B_PIDS+=("$!")
    until grep -q '"tokens_predicted":[1-9]' "$out.stream" 2>/dev/null; do
        if ! kill -0 "${B_PIDS[-1]}" 2>/dev/null; then
            echo "error: task B ended before generating: $(head -c 200 "$out.stream" "$out.err" | tr '\n' ' ')" >&2
            return 1
        fi
        sleep 0.05; waited=$((waited + 1))
        [ "$waited" -lt $((TIMEOUT * 20)) ] || { echo "error: task B generated nothing in ${TIMEOUT} s" >&2; return 1; }
    done
}

stop_all() {  # stop_all: cut the neighbours this script started (the server cancels them)
    local p
    for p in "${B_PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${B_PIDS[@]}"; do wait "$p" 2>/dev/null; done
    B_PIDS=()
}

report_phase() {  # report_phase LABEL OUT
    python3 - "$1" "$2" <<'PY'
import json, sys
m = json.load(open(sys.argv[2] + ".meta"))
print(f"{sys.argv[1]:<48} latency {m['latency']:8.3f} s   {m['tokens']:5d} tokens   "
      f"{m['tokens'] / m['latency']:8.1f} tok/s")
PY
}
# ---- end of helpers ----

check_server "$URL"
WORK="$(mktemp -d)"
trap 'stop_all; rm -rf "$WORK"' EXIT

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
