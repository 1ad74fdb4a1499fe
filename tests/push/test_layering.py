"""What relay.push may take from google: google-auth's token checks, nothing else.

tests/unit/test_public_api.py keeps google's packages behind the transports;
push verification needs google-auth, so this test holds the push package to
google.auth alone (never google.cloud, never Pub/Sub's client).
"""

from __future__ import annotations

import re
from pathlib import Path

import relay.push

PACKAGE = Path(relay.push.__file__).parent
#: An import of google, as a statement or through importlib.
GOOGLE = re.compile(
    r"""^\s*(?:from|import)\s+(google\b[\w.]*)|import_module\(["'](google\b[\w.]*)["']\)""",
    re.M,
)


def test_push_uses_only_google_auth() -> None:
    found = {
        path.name: sorted({a or b for a, b in GOOGLE.findall(path.read_text())})
        for path in PACKAGE.glob("*.py")
    }
    used = {name: refs for name, refs in found.items() if refs}
    assert set(used) <= {"auth.py"}, used
    for ref in used.get("auth.py", []):
        assert ref.startswith("google.auth"), ref
    assert used["auth.py"], "auth.py verifies tokens with google-auth"
