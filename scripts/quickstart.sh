#!/usr/bin/env bash
# The quickstart, end to end, on the local Pub/Sub emulator:
#
#   1. install uv if it is missing, then `uv sync --frozen`;
#   2. in examples/quickstart, start `relay-cli run --settings settings --emulator`
#      (the emulator on a free loopback port plus a worker consuming it);
#   3. publish 5 messages with `relay-cli publish` to the same emulator;
#   4. wait until the worker's log shows them handled (and the portrait photo
#      filtered out);
#   5. SIGTERM the worker, check it drains, exits 0 and stopped the emulator.
#
# Needs Python 3.10+ only: the emulator is relay's own server (RELAY_EMULATOR=google
# uses Google's, which needs Java 17+ and the Cloud SDK's Pub/Sub emulator). Exits
# non-zero if any step fails; the worker and the emulator are stopped whatever
# happens. QUICKSTART_VENV=/path/to/venv uses that environment as it is (no uv,
# no sync); the test suite runs the script that way.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"

READY_TIMEOUT=${QUICKSTART_READY_TIMEOUT:-120}   # seconds: emulator start + provisioning
HANDLED_TIMEOUT=${QUICKSTART_HANDLED_TIMEOUT:-60}

WORKDIR="$(mktemp -d "${TMPDIR:-/tmp}/relay-quickstart.XXXXXX")"
LOG="$WORKDIR/worker.log"
WORKER_PID=""
EMULATOR_PID=""
SUCCESS=""

alive() { [[ -n "$1" ]] && kill -0 "$1" 2>/dev/null; }

cleanup() {
    local rc=$?
    if alive "$WORKER_PID"; then
        note "stopping the worker (pid $WORKER_PID)"
        kill -TERM "$WORKER_PID" 2>/dev/null || true
        for _ in $(seq 1 150); do alive "$WORKER_PID" || break; sleep 0.1; done
        alive "$WORKER_PID" && kill -KILL "$WORKER_PID" 2>/dev/null || true
    fi
    if alive "$EMULATOR_PID"; then  # the worker normally stops it; this is the backstop
        note "stopping the emulator (pid $EMULATOR_PID)"
        kill -TERM -- "-$EMULATOR_PID" 2>/dev/null || kill -TERM "$EMULATOR_PID" 2>/dev/null || true
        for _ in $(seq 1 100); do alive "$EMULATOR_PID" || break; sleep 0.1; done
        alive "$EMULATOR_PID" && kill -KILL -- "-$EMULATOR_PID" 2>/dev/null || true
    fi
    if [[ -z "$SUCCESS" && -s "$LOG" ]]; then
        echo "---- worker log (last 40 lines) ----" >&2
        tail -n 40 "$LOG" >&2
        echo "------------------------------------" >&2
    fi
    rm -rf "$WORKDIR"
    if [[ -z "$SUCCESS" ]]; then
        (( rc != 0 )) || rc=1
        echo "quickstart FAILED (exit $rc)" >&2
        exit "$rc"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# wait_for PATTERN COUNT TIMEOUT: until the worker log has COUNT lines matching PATTERN.
wait_for() {
    local pattern=$1 count=$2 timeout=$3 deadline=$((SECONDS + $3)) seen
    while seen=$(grep -cE -- "$pattern" "$LOG" 2>/dev/null || true); (( ${seen:-0} < count )); do
        alive "$WORKER_PID" || fail "the worker exited early (see its log below)"
        (( SECONDS < deadline )) \
            || fail "timed out after ${timeout}s waiting for $count line(s) matching '$pattern'"
        sleep 0.2
    done
}

# ---------------------------------------------------------------- environment
if [[ -n "${QUICKSTART_VENV:-}" ]]; then
    VENV="$QUICKSTART_VENV"
    say "using the environment in $VENV as it is"
else
    require_python
    ensure_uv
    say "uv sync --frozen"
    (cd "$ROOT" && "$UV" sync --frozen)
    VENV="${UV_PROJECT_ENVIRONMENT:-$ROOT/.venv}"
fi
CLI="$VENV/bin/relay-cli"
[[ -x "$CLI" ]] || fail "$CLI is missing; run uv sync"
if [[ "${RELAY_EMULATOR:-relay}" == google ]]; then
    command -v java >/dev/null 2>&1 || fail "java is not on PATH: Google's Pub/Sub emulator (RELAY_EMULATOR=google) needs Java 17+"
fi

# ---------------------------------------------------------------- the worker
cd "$ROOT/examples/quickstart"
say "starting the emulator and the worker: relay-cli run --settings settings --emulator  (in examples/quickstart)"
: >"$LOG"  # before the worker starts: its own redirection happens in the child, later
"$CLI" run --settings settings --emulator >"$LOG" 2>&1 </dev/null &
WORKER_PID=$!

wait_for 'PUBSUB_EMULATOR_HOST=' 1 "$READY_TIMEOUT"
EMULATOR_LINE="$(grep -m1 'PUBSUB_EMULATOR_HOST=' "$LOG")"
EMULATOR_PID="$(sed -n 's/.*(pid \([0-9]*\)).*/\1/p' <<<"$EMULATOR_LINE")"
export PUBSUB_EMULATOR_HOST="${EMULATOR_LINE##*PUBSUB_EMULATOR_HOST=}"
note "emulator at $PUBSUB_EMULATOR_HOST (pid $EMULATOR_PID)"
wait_for '^relay-cli: worker running' 1 "$READY_TIMEOUT"
note "worker (pid $WORKER_PID) is consuming:"
grep -E 'created (topic|subscription)|worker consuming' "$LOG" | sed 's/^/      /'

# ---------------------------------------------------------------- publishing
say "publishing 5 messages with relay-cli publish"
publish() {
    alive "$WORKER_PID" || fail "the worker exited early (see its log below)"
    "$CLI" publish --settings settings --timeout 20 "$@" >"$WORKDIR/message-id" \
        || fail "relay-cli publish $* failed"
    note "relay-cli publish $*  ->  message id $(cat "$WORKDIR/message-id")"
}
publish orders '{"id": 1, "email": "ada@example.com", "item": "coffee", "quantity": 2}'
publish orders '{"id": 2, "email": "alan@example.com", "item": "tea", "quantity": 1}'
publish orders '{"id": 3, "email": "grace@example.com", "item": "cake", "quantity": 3}'
publish photos '{"name": "alps.jpg"}' --attr orientation=landscape
publish photos '{"name": "cat.jpg"}' --attr orientation=portrait

# 3 orders x 2 subscriptions + 1 landscape photo = 7 handler runs; the portrait
# photo is acked without running the handler (status "skipped").
say "waiting for the worker to handle them"
wait_for 'quickstart: (order|photo) ' 7 "$HANDLED_TIMEOUT"
wait_for 'quickstart-photos.* skipped' 1 "$HANDLED_TIMEOUT"
grep -E 'quickstart: |quickstart-photos.* skipped' "$LOG" | sed 's/^/      /'
if grep -q 'cat.jpg: panorama' "$LOG"; then
    fail "the portrait photo reached make_panorama despite its filter"
fi

# ---------------------------------------------------------------- stopping
say "stopping the worker with SIGTERM"
kill -TERM "$WORKER_PID"
rc=0
wait "$WORKER_PID" || rc=$?
WORKER_PID=""
grep -E 'SIGTERM received|worker stopped|stopping the Pub/Sub emulator' "$LOG" | sed 's/^/      /'
(( rc == 0 )) || fail "the worker exited with code $rc (expected 0)"
if alive "$EMULATOR_PID"; then
    fail "the emulator (pid $EMULATOR_PID) is still running after the worker exited"
fi
note "worker exited 0; emulator stopped"

SUCCESS=1
echo "quickstart OK: 5 messages published, 7 handled by 3 subscriptions, 1 filtered out; worker stopped cleanly (exit 0)"
