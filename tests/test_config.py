"""Settings are validated once, at start-up, with errors that name the variable."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from chatbot_sessions import create_app
from chatbot_sessions.config import (
    ATTRIBUTE_OF,
    VARIABLES,
    ConfigError,
    load_settings,
    parse_host_port,
)
from tests.support.processes import REPO_ROOT


def test_defaults_without_environment():
    settings = load_settings(environ={})
    assert settings.session_ttl == 86400 and settings.max_messages_per_session == 1000
    assert settings.max_question_chars == 4000 and settings.redis_socket_timeout == 2.0
    assert settings.uses_embedded_store


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SESSION_TTL", "abc"),
        ("SESSION_TTL", "0"),
        ("SESSION_TTL", "-5"),
        ("MAX_MESSAGES_PER_SESSION", "1"),
        ("MAX_QUESTION_CHARS", "many"),
        ("REDIS_SOCKET_TIMEOUT", "0"),
        ("REDIS_PORT", "70000"),
        ("REDIS_URL", "http://example.com"),
        ("REDIS_CLUSTER", "perhaps"),
        ("LOG_LEVEL", "LOUD"),
    ],
)
def test_bad_values_name_the_variable(variable, value):
    with pytest.raises(ConfigError) as info:
        load_settings(environ={variable: value})
    assert variable in str(info.value)


def test_secrets_are_not_echoed_in_errors():
    with pytest.raises(ConfigError) as info:
        load_settings(environ={"REDIS_URL": "http://user:hunter2@host"})
    assert "hunter2" not in str(info.value) and "REDIS_URL" in str(info.value)


def test_environment_and_overrides():
    settings = load_settings({"SESSION_TTL": 60}, environ={"SESSION_TTL": "30", "REDIS_HOST": "h"})
    assert settings.session_ttl == 60 and settings.redis_host == "h"
    assert not settings.uses_embedded_store


def test_empty_values_count_as_unset():
    assert load_settings(environ={"REDIS_HOST": "", "SESSION_TTL": ""}).uses_embedded_store


def test_unknown_override_is_refused():
    with pytest.raises(ConfigError, match="SESION_TTL"):
        load_settings({"SESION_TTL": 5}, environ={})


def test_create_app_stops_on_bad_setting():
    with pytest.raises(ConfigError, match="SESSION_TTL"):
        create_app({"SESSION_TTL": "abc"})


# How the README's default column says "no value".
_UNSET = {"unset", "none", "shipped docs"}


def _readme_configuration_rows() -> list[tuple[list[str], list[str]]]:
    """(variable names, defaults) per row of README.md's configuration table."""
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|") for line in section.splitlines() if line.startswith("| `")]
    assert rows, "README.md has no configuration table under '## Configuration'"
    return [
        (re.findall(r"`([A-Z][A-Z0-9_]*)`", cells[1]), cells[2].strip().split(" / "))
        for cells in rows
    ]


def test_readme_configuration_table_lists_every_setting():
    documented = {name for names, _ in _readme_configuration_rows() for name in names}
    missing = VARIABLES - documented
    assert not missing, f"add these settings to README.md's configuration table: {missing}"
    unknown = documented - VARIABLES
    assert not unknown, f"README.md's configuration table names unknown variables: {unknown}"


def test_readme_configuration_table_shows_the_real_defaults():
    defaults = load_settings(environ={})
    for names, shown in _readme_configuration_rows():
        if len(shown) == 1 and len(names) > 1:
            shown = shown * len(names)  # one "unset" for the whole row
        assert len(shown) == len(names), f"README row {names}: one default per variable"
        for name, value in zip(names, shown, strict=True):
            actual = getattr(defaults, ATTRIBUTE_OF[name])
            if value in _UNSET:
                assert actual in (None, ()), f"README says {name} is {value}; it is {actual!r}"
            else:
                parsed = getattr(load_settings(environ={name: value}), ATTRIBUTE_OF[name])
                assert parsed == actual, f"README says {name}={value}; the default is {actual!r}"


# Redis topology: checked at start-up like every other setting.


def test_sentinels_without_a_master_name_stop_start_up_naming_the_variable():
    with pytest.raises(ConfigError, match="REDIS_SENTINEL_MASTER"):
        load_settings(environ={"REDIS_SENTINELS": "127.0.0.1:26379"})


@pytest.mark.parametrize("entry", ["sentinel-host", "host:", ":26379", "host:port", "a b:1"])
def test_sentinel_entries_must_be_host_port(entry):
    with pytest.raises(ConfigError, match=r"REDIS_SENTINELS.*host:port"):
        load_settings(environ={"REDIS_SENTINELS": entry, "REDIS_SENTINEL_MASTER": "m"})


def test_sentinel_and_cluster_are_exclusive_and_cluster_has_only_db_0():
    with pytest.raises(ConfigError, match="REDIS_CLUSTER"):
        load_settings(
            environ={"REDIS_SENTINELS": "h:1", "REDIS_SENTINEL_MASTER": "m", "REDIS_CLUSTER": "1"}
        )
    with pytest.raises(ConfigError, match="REDIS_DB"):
        load_settings(environ={"REDIS_CLUSTER": "1", "REDIS_DB": "3"})


def test_sentinel_password_is_never_echoed():
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"REDIS_SENTINELS": "x", "REDIS_SENTINEL_PASSWORD": "s3cret"})
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize(
    ("entry", "expected"),
    [("10.0.0.5:26379", ("10.0.0.5", 26379)), ("[::1]:26380", ("::1", 26380)),
     ("sentinel-0.svc:5000", ("sentinel-0.svc", 5000))],
)  # fmt: skip
def test_parse_host_port(entry, expected):
    assert parse_host_port(entry) == expected


def test_port_out_of_range_is_rejected():
    with pytest.raises(ValueError):
        parse_host_port("h:70000")


def test_gunicorn_master_refuses_to_start_with_sentinels_but_no_master_name():
    env = {"PATH": "/usr/bin:/bin", "REDIS_SENTINELS": "127.0.0.1:26379", "PORT": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--check-config", "wsgi:app"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert "REDIS_SENTINEL_MASTER" in result.stdout + result.stderr
