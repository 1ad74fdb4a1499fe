#!/usr/bin/env bash
# The project's test command (CI runs it through .ci/run): install the locked
# environment, then ruff, mypy (strict) and the whole pytest suite, which starts
# the Pub/Sub emulator itself. Every check runs; the exit code is non-zero if
# any failed. Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"

ensure_uv
say "uv sync --frozen --all-extras (with the dev group)"
"$UV" sync --frozen --all-extras

lint_paths=()
for path in relay tests examples bench; do
    [[ -e "$path" ]] && lint_paths+=("$path")
done

failed=()
say "ruff check ${lint_paths[*]}"
"$UV" run --frozen ruff check "${lint_paths[@]}" || failed+=(ruff)
say "mypy (strict, config in pyproject.toml)"
"$UV" run --frozen mypy || failed+=(mypy)
say "pytest${*:+ $*}"
"$UV" run --frozen pytest "$@" || failed+=(pytest)

if (( ${#failed[@]} )); then
    printf 'FAILED: %s\n' "${failed[*]}" >&2
    exit 1
fi
say "all checks passed: ruff, mypy, pytest"
