"""The documentation keeps up with the code it describes."""

from pathlib import Path

from relay.middleware import POST_HOOKS, PRE_HOOKS
from relay.settings import KEYS, RENAMED_KEYS

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_every_setting_and_renamed_rele_key_is_documented() -> None:
    text = (DOCS / "settings.md").read_text()
    missing = [key for key in [*KEYS, *RENAMED_KEYS] if f"`{key}`" not in text]
    assert missing == [], f"docs/settings.md does not mention {missing}"


def test_every_middleware_hook_is_documented() -> None:
    text = (DOCS / "middleware.md").read_text()
    missing = [hook for hook in ("setup", *PRE_HOOKS, *POST_HOOKS) if f"`{hook}" not in text]
    assert missing == [], f"docs/middleware.md does not mention {missing}"
