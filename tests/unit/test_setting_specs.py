"""Each setting is declared once (relay.setting_specs); everything else agrees with it."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from relay import ConfigurationError, Settings
from relay.setting_credentials import CREDENTIALS
from relay.setting_docs import COMMAND, difference, render
from relay.setting_specs import SECRETS, SETTINGS, SPECS, SettingsError
from relay.settings import KEYS
from tests.keys import service_account_key

ROOT = Path(__file__).resolve().parents[2]


def test_the_docs_tables_are_the_declarations() -> None:
    diff = difference(ROOT / "docs" / "settings.md")
    assert diff == "", f"docs/settings.md disagrees with relay/setting_specs.py:\n{diff}\n" \
        f"regenerate the tables with: {COMMAND}"


def test_a_changed_declaration_shows_in_the_diff(monkeypatch: pytest.MonkeyPatch) -> None:
    page = (ROOT / "docs" / "settings.md").read_text()
    spec = SPECS["ack_deadline"]
    changed = dataclasses.replace(spec, description="something else")
    monkeypatch.setattr("relay.setting_docs.SETTINGS",
                        tuple(changed if s is spec else s for s in SETTINGS))
    assert "something else" in render(page) and render(page) != page


def test_every_field_is_declared_once_with_the_fields_default() -> None:
    fields = dataclasses.fields(Settings)
    assert [f.name for f in fields] == sorted(SPECS, key=[f.name for f in fields].index)
    assert {f.name for f in fields} == set(SPECS) and len(SETTINGS) == len(SPECS)
    defaults = Settings()
    for spec in SETTINGS:
        assert getattr(defaults, spec.name) == spec.default, spec.key
        assert spec.coerce(spec.default) == spec.default, spec.key  # a default is valid
    assert set(KEYS) == {spec.key for spec in SETTINGS}


def test_descriptions_are_one_line() -> None:
    for spec in SETTINGS:
        assert spec.description and "\n" not in spec.description, spec.key
        assert "|" not in spec.description, spec.key


def test_the_secrets_are_the_credentials_and_the_repr_hides_them() -> None:
    assert set(CREDENTIALS) == SECRETS
    info, _ = service_account_key()
    s = Settings.load(environ={}, gc_credentials_json=json.dumps(info))
    for name in SECRETS:
        assert f"{name}=<set, not shown>" in repr(s) or f"{name}=None" in repr(s)
    assert info["client_email"] not in repr(s)


def test_each_setting_reads_its_environment_form() -> None:
    env = {"RELAY_FILTER_SUBS_BY": "tests.unit.test_setting_specs.kind_is_order",
           "RELAY_HEALTH_PORT": "", "RELAY_ENCODER": "json.JSONEncoder",
           "RELAY_DEAD_LETTER_KEEP": "off", "RELAY_FLOW_MAX_LEASE_EXTENSION": "30"}
    s = Settings.load(environ=env)
    assert s.filter_subs_by == (kind_is_order,)
    assert s.health_port is None and s.dead_letter_keep is False
    assert s.encoder is json.JSONEncoder and s.flow_max_lease_extension == 30.0


def kind_is_order(kind: str | None = None, **attributes: Any) -> bool:
    return kind == "order"


@pytest.mark.parametrize("value", [kind_is_order, "tests.unit.test_setting_specs.kind_is_order",
                                   [kind_is_order], (kind_is_order,)])
def test_filter_subs_by_takes_one_filter_or_a_list(value: Any) -> None:
    assert Settings.load(environ={}, filter_subs_by=value).filter_subs_by == (kind_is_order,)


def test_a_filter_subs_by_that_is_neither_says_what_the_docs_allow() -> None:
    with pytest.raises(ConfigurationError) as raised:
        Settings.load({"FILTER_SUBS_BY": 3}, environ={})
    message = str(raised.value)
    allowed = SPECS["filter_subs_by"].rule.allowed()
    assert message.startswith(f"FILTER_SUBS_BY: 3 is not allowed; expected {allowed}"), message
    assert 'for instance FILTER_SUBS_BY: ["myapp.filters.only_orders"]' in message
    assert "expected a list" not in message
    page = (ROOT / "docs" / "settings.md").read_text()
    assert f"| {allowed} |" in page


def test_flow_max_lease_extension_says_what_zero_means_as_the_docs_do() -> None:
    with pytest.raises(ConfigurationError) as raised:
        Settings.load({"FLOW_MAX_LEASE_EXTENSION": 5}, environ={})
    assert "0 (the subscription's ack deadline)" in str(raised.value)
    page = (ROOT / "docs" / "settings.md").read_text()
    assert "0 (the subscription's ack deadline), or 10 to 600" in page


def test_three_problems_in_one_dict_are_one_error_naming_all_three() -> None:
    rele = {"ACK_DEADLINE": 5, "THREADS_PER_SUBSCRIPTION": 4, "PUBLISHER_BLOCKING": "maybe"}
    with pytest.raises(SettingsError) as raised:
        Settings.load(rele, environ={})
    error = raised.value
    assert isinstance(error, ConfigurationError) and len(error.problems) == 3
    lines = str(error).splitlines()
    assert lines[0] == "3 problems in the settings:"
    assert any("ACK_DEADLINE: 5 is out of range; expected 10 to 600" in ln for ln in lines)
    assert any("'THREADS_PER_SUBSCRIPTION'" in ln and "CONCURRENCY" in ln for ln in lines)
    assert any("PUBLISHER_BLOCKING='maybe': expected true/false" in ln for ln in lines)


def test_problems_from_every_source_and_the_credentials_come_together(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("PUBSUB_EMULATOR_HOST", raising=False)
    key_path = str(tmp_path / "no-such-key.json")
    with pytest.raises(SettingsError) as raised:
        Settings.load({"PROVISIONING": "apply"}, environ={"RELAY_ACK_DEADLIN": "10"},
                      gc_credentials_path=key_path, concurrency=0)
    text = str(raised.value)
    assert len(raised.value.problems) == 4, text
    for fragment in ("PROVISIONING: 'apply'", "RELAY_ACK_DEADLIN", "CONCURRENCY: 0",
                     "GC_CREDENTIALS_PATH: there is no file"):
        assert fragment in text
    assert key_path not in text  # a credential is never shown


def test_one_problem_keeps_its_own_message_and_cause() -> None:
    with pytest.raises(ConfigurationError) as raised:
        Settings.load({"ENCODER": "nomodule_xyz.Thing"}, environ={})
    assert not isinstance(raised.value, SettingsError)
    assert str(raised.value).startswith("ENCODER: cannot import module")
    assert isinstance(raised.value.__cause__, ImportError)


def test_the_constructor_and_replace_report_every_problem_too() -> None:
    with pytest.raises(SettingsError) as raised:
        Settings(concurrency=0, dead_letter_keep="no")  # type: ignore[arg-type]
    assert sorted(p.split(":")[0] for p in raised.value.problems) == [
        "CONCURRENCY", "DEAD_LETTER_KEEP"]
    with pytest.raises(SettingsError) as again:
        Settings.load(environ={}).replace(ack_deadline=1, log_format="xml", nope=1)
    assert len(again.value.problems) == 3


def test_relay_cli_reports_every_settings_problem_in_one_run(tmp_path: Path) -> None:
    (tmp_path / "conf.py").write_text(textwrap.dedent("""
        RELAY = {"ACK_DEADLINE": 5, "THREADS_PER_SUBSCRIPTION": 4, "LOG_FORMAT": "xml"}
    """))
    (tmp_path / "subs.py").write_text(
        "from relay import sub\n\n@sub(topic='orders')\ndef on_order(data, **attrs):\n    pass\n"
    )
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("RELAY_") and k != "PUBSUB_EMULATOR_HOST"}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(ROOT)])
    done = subprocess.run(
        [sys.executable, "-m", "relay.cli", "subs", "--settings", "conf"], cwd=tmp_path,
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "3 problems in the settings" in done.stderr
    for key in ("ACK_DEADLINE", "THREADS_PER_SUBSCRIPTION", "LOG_FORMAT"):
        assert key in done.stderr
