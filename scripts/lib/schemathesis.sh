# Shared by scripts/schemathesis-emulator and scripts/schemathesis-endpoint (sourced, not run): installs a
# pinned schemathesis from PyPI into a virtualenv under the cargo target directory when missing, builds the
# nbwss binary, keeps a scratch directory and one background process that are cleaned up on exit, and runs
# schemathesis with a fixed seed and bounded examples, so that a run is repeatable. Override with
# SCHEMATHESIS_SEED and SCHEMATHESIS_EXAMPLES.

SCHEMATHESIS_VERSION=4.32.5
SEED=${SCHEMATHESIS_SEED:-20260101}
EXAMPLES=${SCHEMATHESIS_EXAMPLES:-25}
TARGET=$(realpath -m "${CARGO_TARGET_DIR:-target}")
VENV=$TARGET/schemathesis-venv

if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "version $SCHEMATHESIS_VERSION\$"; then
    echo "== installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet "schemathesis==$SCHEMATHESIS_VERSION"
fi

echo "== building nbwss"
cargo build --quiet -p nbwss-cli
NBWSS=$TARGET/debug/nbwss

WORK=$(mktemp -d)
# The process under test (started by the script; stopped on exit), and its log.
SERVER_PID=
SERVER_LOG=$WORK/server.log
cleanup() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# A free TCP port on loopback.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Reads a field of the JSON document on standard input: json_field '["data"]["id"]'.
json_field() { python3 -c "import json, sys; print(json.load(sys.stdin)$1)"; }

# Fails, with the process's log, when the process under test has exited. $1 says when.
require_server_alive() {
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        echo "the process under test exited $1:" >&2
        tail -50 "$SERVER_LOG" >&2
        exit 1
    fi
}

# Waits (60 s at most) until the command given as arguments succeeds, while the process under test runs.
wait_until() {
    for _ in $(seq 300); do
        if "$@"; then
            return 0
        fi
        require_server_alive "before serving"
        sleep 0.2
    done
    echo "gave up after 60 s waiting for: $*" >&2
    tail -50 "$SERVER_LOG" >&2
    exit 1
}

# Runs schemathesis: run_schemathesis DOCUMENT URL [OPTION...]; the seed, the examples, one worker, a 10 s
# request timeout and every check are set here. Exits with schemathesis' status, or 1 if the process under
# test died during the run.
run_schemathesis() {
    local document=$1 url=$2 status=0
    shift 2
    echo "== schemathesis $SCHEMATHESIS_VERSION: seed $SEED, $EXAMPLES examples per operation"
    # From the scratch directory: schemathesis and hypothesis keep state in the working directory.
    (cd "$WORK" && "$VENV/bin/schemathesis" run "$document" --url "$url" \
        --seed "$SEED" --max-examples "$EXAMPLES" --workers 1 --request-timeout 10 \
        --checks all --no-color "$@") || status=$?
    require_server_alive "during the run"
    exit "$status"
}
