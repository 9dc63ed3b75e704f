"""Settings are validated once, at start-up, with errors that name the variable."""

from __future__ import annotations

import re

import pytest

from chatbot_sessions import create_app
from chatbot_sessions.config import _SCHEMA, _VARIABLES, ConfigError, load_settings
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
    missing = _VARIABLES - documented
    assert not missing, f"add these settings to README.md's configuration table: {missing}"
    unknown = documented - _VARIABLES
    assert not unknown, f"README.md's configuration table names unknown variables: {unknown}"


def test_readme_configuration_table_shows_the_real_defaults():
    defaults = load_settings(environ={})
    field_of = {field.data_key: name for name, field in _SCHEMA.fields.items()}
    for names, shown in _readme_configuration_rows():
        if len(shown) == 1 and len(names) > 1:
            shown = shown * len(names)  # one "unset" for the whole row
        assert len(shown) == len(names), f"README row {names}: one default per variable"
        for name, value in zip(names, shown, strict=True):
            actual = getattr(defaults, field_of[name])
            if value in _UNSET:
                assert actual in (None, ()), f"README says {name} is {value}; it is {actual!r}"
            else:
                parsed = getattr(load_settings(environ={name: value}), field_of[name])
                assert parsed == actual, f"README says {name}={value}; the default is {actual!r}"
