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


def test_every_test_the_reliability_table_cites_exists() -> None:
    import re

    text = (DOCS / "reliability.md").read_text()
    table = text.split("## Bad input", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) - 1 >= 15, "the bad-input table needs at least 15 rows"
    root = DOCS.parent
    cited = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", table)
    assert len(cited) >= len(rows) - 1
    for path, name in cited:
        source = (root / path).read_text()
        assert re.search(rf"^(async )?def {name}\(", source, re.M), f"{path}::{name} is missing"
    for row in rows[1:]:
        assert "`tests/" in row, f"a bad-input row cites no test: {row[:80]}"


def test_every_guide_is_in_the_site_navigation() -> None:
    import re

    nav = (DOCS.parent / "mkdocs.yml").read_text().split("\nnav:", 1)[1]
    listed = set(re.findall(r"([\w/-]+\.md)\s*$", nav, re.M))
    guides = {path.name for path in DOCS.glob("*.md")} | {"deployment.md"}
    assert guides - listed == set(), "mkdocs.yml's nav misses these guides"
    reference = {str(path.relative_to(DOCS)) for path in (DOCS / "reference").glob("*.md")}
    assert reference - listed == set(), "mkdocs.yml's nav misses these reference pages"


def test_the_api_reference_covers_relay_all() -> None:
    import relay

    text = (DOCS / "reference" / "relay.md").read_text()
    missing = [name for name in relay.__all__ if f"relay.{name}" not in text]
    assert missing == [], f"docs/reference/relay.md does not document {missing}"
