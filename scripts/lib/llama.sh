# shellcheck shell=bash
# llama.sh: helpers shared by effect/test_llamacpp.sh and effect/test_wrr.sh (sourced, not run).
# Expects URL and TIMEOUT from the script that sources it, and lib/common.sh (die, need) sourced before it.
PROMPT="Write a long story about a lighthouse keeper who counts the ships that pass at night."
B_PIDS=()

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

measure() {  # measure OUT PRIORITY N_PREDICT: ${REPS:-1} requests one after the other; OUT.meta = the median one
    local i
    for ((i = 1; i <= ${REPS:-1}; i++)); do
        request "$1-$i" "$2" "$3" || return 1
    done
    python3 - "$1" "${REPS:-1}" <<'PY'
import json, shutil, sys
out, reps = sys.argv[1], int(sys.argv[2])
metas = [(json.load(open(f"{out}-{i}.meta")), i) for i in range(1, reps + 1)]
metas.sort(key=lambda m: m[0]["latency"])
shutil.copy(f"{out}-{metas[reps // 2][1]}.meta", out + ".meta")
PY
}

effect_start() {  # effect_start PRIORITY...: the set-up of every effect script: URL without its trailing slash, a
    # ready server (else exit 2), WORK (a temporary directory removed at exit, with the neighbours stopped), one
    # warm-up request at each PRIORITY (else exit 2)
    URL="${URL%/}"
    check_server "$URL"
    WORK="$(mktemp -d)"
    trap 'stop_all; rm -rf "$WORK"' EXIT
    warm_up "$@" || exit 2
}

warm_up() {  # warm_up PRIORITY...: one short request at each priority, so that every instance has run once
    # (its first decode allocates buffers and starts its compute threads; on the CPU, a second instance's
    # OpenMP threads also change how the first one's threads wait) before anything is measured
    local p
    for p in "$@"; do
        request "$WORK/warm-$p" "$p" 4 || return 1
    done
}

report_phase() {  # report_phase LABEL OUT
    python3 - "$1" "$2" <<'PY'
import json, sys
m = json.load(open(sys.argv[2] + ".meta"))
print(f"{sys.argv[1]:<48} latency {m['latency']:8.3f} s   {m['tokens']:5d} tokens   "
      f"{m['tokens'] / m['latency']:8.1f} tok/s")
PY
}
