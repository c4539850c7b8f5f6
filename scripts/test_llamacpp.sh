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
                        [--min-gain F] [--timeout S]
  --url URL      server base URL (default: $XSCHED_LLAMA_URL or http://127.0.0.1:8080)
  --tokens N     tokens task A generates (default 256)
  --b-tokens N   tokens each task-B request generates (default 8 x --tokens)
  --high P       priority of task A in phases 1 and 3 (default 10)
  --normal P     priority of task B, and of A in phase 2 (default 0)
  --min-gain F   share of the phase-2 slowdown priority must remove (default 0.5)
  --timeout S    seconds allowed per request (default 600)
EOF
}

die() { echo "error: $*" >&2; exit 2; }

URL="${XSCHED_LLAMA_URL:-http://127.0.0.1:8080}"
TOKENS=256
B_TOKENS=""
HIGH=10
NORMAL=0
MIN_GAIN=0.5
TIMEOUT=600

int_arg() { [[ "$2" =~ ^-?[0-9]+$ ]] || die "$1 needs an integer, not '$2'"; }
num_arg() { [[ "$2" =~ ^[0-9]+([.][0-9]+)?$ ]] || die "$1 needs a number, not '$2'"; }

while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --url|--tokens|--b-tokens|--high|--normal|--min-gain|--timeout)
            [ $# -ge 2 ] || die "$1 needs a value"
            case "$1" in
                --url) URL="$2" ;;
                --tokens) int_arg "$1" "$2"; TOKENS="$2" ;;
                --b-tokens) int_arg "$1" "$2"; B_TOKENS="$2" ;;
                --high) int_arg "$1" "$2"; HIGH="$2" ;;
                --normal) int_arg "$1" "$2"; NORMAL="$2" ;;
                --min-gain) num_arg "$1" "$2"; MIN_GAIN="$2" ;;
                --timeout) num_arg "$1" "$2"; TIMEOUT="$2" ;;
            esac
            shift 2 ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
done
[ "$TOKENS" -ge 1 ] || die "--tokens must be at least 1"
B_TOKENS="${B_TOKENS:-$((TOKENS * 8))}"
[ "$B_TOKENS" -ge 1 ] || die "--b-tokens must be at least 1"
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

echo "server: $URL   task A: $TOKENS tokens   task B: $B_TOKENS tokens per request"
request "$WORK/a1" "$HIGH" "$TOKENS" || exit 2
report_phase "1. A alone (priority $HIGH)" "$WORK/a1"

phase_with_b() {  # phase_with_b OUT A_PRIORITY
    start_b "$WORK/b-$1" "$NORMAL" "$B_TOKENS" || exit 2
    request "$WORK/$1" "$2" "$TOKENS" || exit 2
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
