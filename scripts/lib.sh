# Shared by scripts/*.sh (sourced, not run): messages and finding or installing uv.
# Expects ROOT (the repository root) to be set by the caller.

say() { printf '==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }
fail() { printf 'FAILED: %s\n' "$*" >&2; exit 1; }

require_python() {
    command -v python3 >/dev/null 2>&1 || fail "python3 is not on PATH (relay needs Python 3.10+)"
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
        || fail "python3 is $(python3 -V 2>&1); relay needs Python 3.10+"
}

# Set UV to a uv executable: the one on PATH, one installed earlier by this
# function, or a fresh one (pip --user first, else a bootstrap virtualenv under
# ~/.cache/relay). The directory holding it is put on PATH.
ensure_uv() {
    if command -v uv >/dev/null 2>&1; then
        UV="$(command -v uv)"
        return
    fi
    require_python
    local user_bin bootstrap
    user_bin="$(python3 -m site --user-base 2>/dev/null || echo "$HOME/.local")/bin"
    bootstrap="${XDG_CACHE_HOME:-$HOME/.cache}/relay/uv-bootstrap"
    if [[ ! -x "$user_bin/uv" && ! -x "$bootstrap/bin/uv" ]]; then
        say "uv is not installed: python3 -m pip install --user uv"
        if ! python3 -m pip install --user --quiet --disable-pip-version-check uv 2>/dev/null; then
            say "pip --user was refused (an externally managed Python?); installing uv into a" \
                "bootstrap virtualenv at $bootstrap"
            python3 -m venv "$bootstrap" \
                || fail "cannot create a virtualenv (install python3-venv, or install uv: https://docs.astral.sh/uv/)"
            "$bootstrap/bin/python" -m pip install --quiet --disable-pip-version-check uv \
                || fail "cannot install uv with pip (install it yourself: https://docs.astral.sh/uv/)"
        fi
    fi
    local dir
    for dir in "$user_bin" "$bootstrap/bin"; do
        if [[ -x "$dir/uv" ]]; then
            export PATH="$dir:$PATH"
            UV="$dir/uv"
            note "using $UV ($("$UV" --version))"
            return
        fi
    done
    fail "uv was installed but cannot be found in $user_bin or $bootstrap/bin"
}

# Print the path of a Python 3.12+ interpreter (RELAY_PYTHON_NEWEST, else the
# newest pyenv version, else python3.13/python3.12 on PATH), or nothing.
# Django 6 (django.tasks) needs one; the main environment may be older.
find_newest_python() {
    local candidate
    local -a candidates=()
    [[ -n "${RELAY_PYTHON_NEWEST:-}" ]] && candidates+=("$RELAY_PYTHON_NEWEST")
    if command -v pyenv >/dev/null 2>&1; then
        local root
        root="$(pyenv root)"
        while IFS= read -r candidate; do
            candidates+=("$candidate")
        done < <(ls -d "$root"/versions/3.1[2-9]*/bin/python3 2>/dev/null | sort -rV)
    fi
    candidates+=(python3.13 python3.12)
    for candidate in "${candidates[@]}"; do
        if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; then
            command -v "$candidate" 2>/dev/null || echo "$candidate"
            return
        fi
    done
}
