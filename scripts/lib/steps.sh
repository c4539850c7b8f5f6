# shellcheck shell=bash
# steps.sh: the `run STEP` and `chain STEP...` commands the GPU runners share (scripts/gpu/gpu-run*.sh; sourced, not
# run, after common.sh). A STEP is a function step_STEP of the sourcing script; `chain` runs the steps one after the
# other as the background job "chain" of scripts/gpu/gpu-carried.sh, each line of its log headed by the time.

# steps_carried_setup: what every runner sets up first: G (scripts/gpu/gpu-carried.sh) and its environment
# (`$G env`: PATCHED, VANILLA, MODELS, RESULTS, ...), B (the bench command against both carried servers, or the
# patched one only when there is no vanilla server), P (the bench command against the patched server only) and the
# synthetic models M8, M06, M17 (Qwen3-8B, -0.6B and -1.7B shapes, Q8_0).
steps_carried_setup() {
    # shellcheck disable=SC2034 # used by the sourcing runner
    G=scripts/gpu/gpu-carried.sh
    eval "$($G env)"
    # shellcheck disable=SC2034
    P=(python3 -m xsched_llama bench --cuda --patched-server "$PATCHED" --builds patched)
    # shellcheck disable=SC2034
    B=(python3 -m xsched_llama bench --cuda --vanilla-server "$VANILLA" --patched-server "$PATCHED")
    # without a vanilla server (its build stopped to save device time), every bench compares the patched instances
    # shellcheck disable=SC2034
    [ -e "$VANILLA" ] || B=("${P[@]}")
    # shellcheck disable=SC2034
    M8=$MODELS/synth-qwen3-8b-q8_0.gguf M06=$MODELS/synth-qwen3-0.6b-q8_0.gguf M17=$MODELS/synth-qwen3-1.7b-q8_0.gguf
}

# steps_list: the step names of the sourcing script.
steps_list() { declare -F | sed -n 's/^declare -f step_//p' | tr '\n' ' ' | sed 's/ $//'; }

# steps_dispatch SCRIPT CMD ARG...: carries out `run` and `chain` for SCRIPT (its path from the repository root);
# returns 64 for any other CMD, so the script can handle its own commands (`run` returns the step's status). `chain` starts the job named CHAIN_NAME
# (default chain); with CHAIN_AFTER=JOB its steps start only when that job has ended (a second chain queued behind
# the first, e.g. the steps that need a server carried in a later call: two chains never share the GPU).
steps_dispatch() {
    local script=$1 cmd=$2 s words="" name=${CHAIN_NAME:-chain} after=${CHAIN_AFTER:-}
    shift 2
    case "$cmd" in
    run)
        [ $# -eq 1 ] && declare -F "step_$1" > /dev/null || die "run STEP (one of: $(steps_list))"
        "step_$1"
        ;;
    chain)
        [ $# -ge 1 ] || die "chain STEP... (steps: $(steps_list))"
        for s in "$@"; do declare -F "step_$s" > /dev/null || die "unknown step $s (steps: $(steps_list))"; done
        [[ "$name" =~ ^[A-Za-z0-9._-]+$ ]] || die "CHAIN_NAME=$name: letters, digits, . _ - only"
        if [ -n "$after" ]; then
            [[ "$after" =~ ^[A-Za-z0-9._-]+$ ]] && [ "$after" != "$name" ] \
                || die "CHAIN_AFTER=$after: the name of another job (letters, digits, . _ -)"
            [ -f "${GC_DIR:-/tmp/gc}/jobs/$after.cmd" ] || die "CHAIN_AFTER=$after: no such job"
            words="echo \"=== after $after \$(date -u +%T)\"; while [ ! -f '${GC_DIR:-/tmp/gc}/jobs/$after.rc' ]; do sleep 2; done;"
        fi
        # a server a step leaves running shares the GPU with the next steps (run 9: a hung server slowed the
        # next serve run several times over): each step's leftovers are killed and named in the log
        for s in "$@"; do
            words="$words echo \"=== $s \$(date -u +%T)\"; $script run $s;"
            words="$words for n in patched-server vanilla-server llama-server; do pkill -9 -x \$n && echo \"=== $s left \$n running: killed\"; done;"
        done
        scripts/gpu/gpu-carried.sh start "$name" -- bash -c "$words echo \"=== done \$(date -u +%T)\""
        ;;
    *)
        return 64
        ;;
    esac
}
