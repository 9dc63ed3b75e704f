"""Settings are validated once, at start-up, with errors that name the variable."""

from __future__ import annotations

import pytest

from chatbot_sessions import create_app
from chatbot_sessions.config import ConfigError, load_settings


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
