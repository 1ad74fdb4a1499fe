#!/usr/bin/env bash
# The project's test command (CI runs it through .ci/run): install the locked
# environment, then ruff, mypy (strict) and the whole pytest suite, which starts
# relay's own Pub/Sub server itself (and Google's emulator for the conformance
# suite); then the transport contract, emulator and fault tests again on
# Google's emulator (RELAY_EMULATOR=google); then the Django tests again on
# Python 3.12+ with the newest Django (a second environment, .venv-newest).
# Every check runs; the exit code is non-zero if any failed. Extra arguments go
# to the main pytest run.
#
# pytest runs the tests in TEST_WORKERS processes (pytest-xdist; default 4,
# 0 for one process): most of the suite waits on servers, deadlines and
# subprocesses rather than on the CPU, so 4 processes fit two cores. Each
# process starts its own emulators.
#
# Without Google's emulator (Java and the Cloud SDK) the runs on it cannot
# happen: in CI (CI set) that is a failure; elsewhere the suite runs on relay's
# server alone and the summary says, loudly, what was not run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"

ensure_uv
say "uv sync --frozen --all-extras --group docs (with the dev group)"
"$UV" sync --frozen --all-extras --group docs

lint_paths=()
for path in relay tests examples bench; do
    [[ -e "$path" ]] && lint_paths+=("$path")
done

failed=()
say "ruff check ${lint_paths[*]}"
"$UV" run --frozen ruff check "${lint_paths[@]}" || failed+=(ruff)
say "mypy (strict, config in pyproject.toml)"
"$UV" run --frozen mypy || failed+=(mypy)
# The docs site (mkdocs.yml, strict: a broken link or anchor, a page missing
# from the nav, a docstring the API reference cannot read fails it); ~4 s.
say "mkdocs build --strict (the docs site, into a temporary directory)"
site="$(mktemp -d)"
NO_MKDOCS_2_WARNING=1 "$UV" run --frozen mkdocs build --strict --quiet --site-dir "$site" \
    || failed+=(docs-site)
rm -rf "$site"
not_run=()
if "$UV" run --frozen python -c 'from relay.emulator import find_launcher; find_launcher()' \
        >/dev/null 2>&1; then
    google=yes
elif [[ -n "${CI:-}" ]]; then
    google=yes  # the tests that need it fail, saying why
else
    google=""
    export CONFORMANCE_SERVERS=relay
    not_run+=("the conformance suite and the contract, emulator and fault tests on Google's emulator (not installed: Java 17+ and the Cloud SDK's pubsub-emulator)")
fi

workers=(-n "${TEST_WORKERS:-4}")
say "pytest ${workers[*]}${*:+ $*}"
"$UV" run --frozen pytest "${workers[@]}" "$@" || failed+=(pytest)

if [[ -n "$google" ]]; then
    say "pytest tests/transports tests/emulator tests/faults on Google's emulator (RELAY_EMULATOR=google)"
    RELAY_EMULATOR=google "$UV" run --frozen pytest -q "${workers[@]}" \
        tests/transports tests/emulator tests/faults \
        || failed+=(pytest-google-emulator)
fi

newest="$(find_newest_python)"
if [[ -z "$newest" ]]; then
    printf 'no Python 3.12+ found (pyenv versions, python3.13, python3.12 on PATH); the\n' >&2
    printf 'Django 6 tests need one: install it or set RELAY_PYTHON_NEWEST=/path/to/python3.12\n' >&2
    failed+=("django-newest (no Python 3.12+)")
else
    say "pytest tests/contrib/django on $("$newest" -V 2>&1) (the newest Django; .venv-newest)"
    export UV_PROJECT_ENVIRONMENT="$ROOT/.venv-newest"
    if "$UV" sync --frozen --all-extras --python "$newest" --quiet; then
        "$UV" run --frozen --python "$newest" python -c \
            'import django; print("    Django", django.get_version())'
        "$UV" run --frozen --python "$newest" pytest -q "${workers[@]}" tests/contrib/django \
            || failed+=(django-newest)
    else
        failed+=("django-newest (uv sync)")
    fi
    unset UV_PROJECT_ENVIRONMENT
fi

for what in "${not_run[@]}"; do
    printf '\nNOT RUN: %s\n' "$what" >&2
done
if (( ${#failed[@]} )); then
    printf 'FAILED: %s\n' "${failed[*]}" >&2
    exit 1
fi
servers="relay's server"
[[ -n "$google" ]] && servers="relay's server and Google's emulator"
say "all checks passed: ruff, mypy, the docs site, pytest on $servers, and the Django tests on the newest Django"
