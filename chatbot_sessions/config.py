"""Every setting the service reads, in one place, parsed and validated once at start-up.

Values come from the environment (a ``.env`` file in development, via python-dotenv) and
can be overridden by the mapping given to ``create_app``. A bad value raises ``ConfigError``
naming the variable and what it accepts, so a typo stops the process instead of surfacing
later as a confusing runtime error. The parsing reuses marshmallow, which the API already
uses for requests, rather than a second validation library.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from marshmallow import (
    EXCLUDE,
    Schema,
    ValidationError,
    fields,
    post_load,
    validate,
    validates,
    validates_schema,
)


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


# host:port, the host a name, an IPv4 address or a bracketed IPv6 address.
HOST_PORT = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[^\s:\[\]]+):(?P<port>\d{1,5})")


def parse_host_port(entry: str) -> tuple[str, int]:
    """Split a validated ``host:port`` entry (IPv6 in brackets) into (host, port)."""
    match = HOST_PORT.fullmatch(entry)
    if match is None or not 1 <= int(match["port"]) <= 65535:
        raise ValueError(f"{entry!r} is not host:port")
    return match["host"].strip("[]"), int(match["port"])


def _positive_int(**kwargs: Any) -> fields.Integer:
    return fields.Integer(strict=False, validate=validate.Range(min=1), **kwargs)


class _Flag(fields.Boolean):
    """An on/off switch that also accepts the empty string as off."""

    falsy = fields.Boolean.falsy | {""}


class _CommaList(fields.Field):
    """A comma-separated list in one variable; blanks are dropped."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> tuple[str, ...]:
        if isinstance(value, list | tuple):
            return tuple(str(v).strip() for v in value if str(v).strip())
        if not isinstance(value, str):
            raise ValidationError("must be a comma-separated list")
        return tuple(part.strip() for part in value.split(",") if part.strip())


@dataclass(frozen=True)
class Settings:
    """The validated configuration; attribute names are the variables in snake case."""

    redis_url: str | None = None
    redis_host: str | None = None
    redis_port: int = 6379
    redis_password: str | None = None
    redis_db: int = 0
    redis_socket_timeout: float = 2.0
    redis_connect_timeout: float = 2.0
    redis_max_connections: int = 64
    redis_sentinels: tuple[str, ...] = ()
    redis_sentinel_master: str | None = None
    redis_sentinel_password: str | None = None
    redis_cluster: bool = False
    session_ttl: int = 86400
    max_messages_per_session: int = 1000
    max_question_chars: int = 4000
    max_content_length: int = 64 * 1024
    history_page_max: int = 1000
    context_messages: int = 50
    context_tokens: int = 3000
    knowledge_dir: str | None = None
    knowledge_poll_interval: float = 1.0
    retrieval: str = "hybrid"
    embedding_cache_dir: str | None = None
    llm_base_url: str | None = None
    llm_api_key: str | None = None
    llm_model: str = "gpt-4o-mini"
    llm_timeout: float = 20.0
    llm_max_tokens: int = 512
    cors_origins: tuple[str, ...] = ()
    admin_token: str | None = None
    log_level: str = "INFO"
    log_message_content: bool = False
    readiness_timeout: float = 1.0
    rate_limit_enabled: bool = True
    rate_limit_create: str = "30/minute"
    rate_limit_send_ip: str = "60/minute"
    rate_limit_send_session: str = "30/minute"
    rate_limit_feedback: str = "60/minute"
    trusted_proxies: int = 0
    idempotency_ttl: int = 600
    idempotency_wait: float = 2.0
    max_generations: int = 8
    stream_retention: int = 300
    # Loopback: `make run` (often the embedded trial store) must not face the network by
    # default. The Dockerfile and docker-compose.yml set HOST=0.0.0.0 for containers.
    host: str = "127.0.0.1"
    port: int = 8000
    web_concurrency: int = 2
    gunicorn_threads: int = 8

    @property
    def uses_embedded_store(self) -> bool:
        """True when no Redis is configured and the in-process store stands in."""
        return not (self.redis_url or self.redis_host or self.redis_sentinels or self.redis_cluster)


class _SettingsSchema(Schema):
    """Maps each environment variable (the data_key) onto a typed ``Settings`` field."""

    class Meta:
        unknown = EXCLUDE

    redis_url = fields.String(data_key="REDIS_URL", load_default=None)
    redis_host = fields.String(data_key="REDIS_HOST", load_default=None)
    redis_port = fields.Integer(data_key="REDIS_PORT", validate=validate.Range(1, 65535))
    redis_password = fields.String(data_key="REDIS_PASSWORD", load_default=None)
    redis_db = fields.Integer(data_key="REDIS_DB", validate=validate.Range(min=0))
    redis_socket_timeout = fields.Float(
        data_key="REDIS_SOCKET_TIMEOUT", validate=validate.Range(min=0.01, max=60)
    )
    redis_connect_timeout = fields.Float(
        data_key="REDIS_CONNECT_TIMEOUT", validate=validate.Range(min=0.01, max=60)
    )
    redis_max_connections = _positive_int(data_key="REDIS_MAX_CONNECTIONS")
    redis_sentinels = _CommaList(data_key="REDIS_SENTINELS")
    redis_sentinel_master = fields.String(data_key="REDIS_SENTINEL_MASTER", load_default=None)
    redis_sentinel_password = fields.String(data_key="REDIS_SENTINEL_PASSWORD", load_default=None)
    redis_cluster = _Flag(data_key="REDIS_CLUSTER")
    session_ttl = _positive_int(data_key="SESSION_TTL")
    max_messages_per_session = fields.Integer(
        data_key="MAX_MESSAGES_PER_SESSION", validate=validate.Range(min=2)
    )
    max_question_chars = _positive_int(data_key="MAX_QUESTION_CHARS")
    max_content_length = fields.Integer(
        data_key="MAX_CONTENT_LENGTH", validate=validate.Range(min=1024)
    )
    history_page_max = _positive_int(data_key="HISTORY_PAGE_MAX")
    context_messages = fields.Integer(data_key="CONTEXT_MESSAGES", validate=validate.Range(0))
    context_tokens = fields.Integer(
        data_key="CONTEXT_TOKENS", validate=validate.Range(50, 1_000_000)
    )
    knowledge_dir = fields.String(data_key="KNOWLEDGE_DIR", load_default=None)
    knowledge_poll_interval = fields.Float(
        data_key="KNOWLEDGE_POLL_INTERVAL", validate=validate.Range(min=0.1, max=60)
    )
    retrieval = fields.String(data_key="RETRIEVAL", validate=validate.OneOf(["bm25", "hybrid"]))
    embedding_cache_dir = fields.String(data_key="EMBEDDING_CACHE_DIR", load_default=None)
    llm_base_url = fields.Url(data_key="LLM_BASE_URL", load_default=None, require_tld=False)
    llm_api_key = fields.String(data_key="LLM_API_KEY", load_default=None)
    llm_model = fields.String(data_key="LLM_MODEL", validate=validate.Length(min=1))
    llm_timeout = fields.Float(data_key="LLM_TIMEOUT", validate=validate.Range(0.1, 600))
    llm_max_tokens = _positive_int(data_key="LLM_MAX_TOKENS")
    cors_origins = _CommaList(data_key="CORS_ORIGINS")
    admin_token = fields.String(data_key="ADMIN_TOKEN", load_default=None)
    log_level = fields.String(
        data_key="LOG_LEVEL",
        validate=validate.OneOf(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]),
    )
    log_message_content = _Flag(data_key="LOG_MESSAGE_CONTENT")
    readiness_timeout = fields.Float(
        data_key="READINESS_TIMEOUT", validate=validate.Range(min=0.05, max=30)
    )
    rate_limit_enabled = _Flag(data_key="RATE_LIMIT_ENABLED")
    rate_limit_create = fields.String(data_key="RATE_LIMIT_CREATE")
    rate_limit_send_ip = fields.String(data_key="RATE_LIMIT_SEND_IP")
    rate_limit_send_session = fields.String(data_key="RATE_LIMIT_SEND_SESSION")
    rate_limit_feedback = fields.String(data_key="RATE_LIMIT_FEEDBACK")
    trusted_proxies = fields.Integer(data_key="TRUSTED_PROXIES", validate=validate.Range(0, 10))
    idempotency_ttl = _positive_int(data_key="IDEMPOTENCY_TTL")
    idempotency_wait = fields.Float(data_key="IDEMPOTENCY_WAIT", validate=validate.Range(0, 30))
    max_generations = fields.Integer(data_key="MAX_GENERATIONS", validate=validate.Range(1, 256))
    stream_retention = _positive_int(data_key="STREAM_RETENTION")
    host = fields.String(data_key="HOST", validate=validate.Length(min=1))
    port = fields.Integer(data_key="PORT", validate=validate.Range(1, 65535))
    web_concurrency = fields.Integer(data_key="WEB_CONCURRENCY", validate=validate.Range(1, 64))
    gunicorn_threads = fields.Integer(data_key="GUNICORN_THREADS", validate=validate.Range(1, 256))

    @validates("redis_url")
    def _check_redis_url(self, value: str | None, **_: Any) -> None:
        if value is not None and urlsplit(value).scheme not in {"redis", "rediss", "unix"}:
            raise ValidationError("must be a redis://, rediss:// or unix:// URL")

    @validates("redis_sentinels")
    def _check_sentinels(self, value: tuple[str, ...], **_: Any) -> None:
        for entry in value:
            try:
                parse_host_port(entry)
            except ValueError:
                raise ValidationError(f"each entry must be host:port, got {entry!r}") from None

    @validates_schema
    def _check_redis_topology(self, data: dict[str, Any], **_: Any) -> None:
        # Caught here rather than when the client is built, so gunicorn's master refuses to
        # start instead of every worker failing on its first request.
        if data.get("redis_sentinels") and not data.get("redis_sentinel_master"):
            raise ValidationError(
                "must name the monitored master when REDIS_SENTINELS is set",
                "REDIS_SENTINEL_MASTER",
            )
        if data.get("redis_sentinels") and data.get("redis_cluster"):
            raise ValidationError(
                "cannot be combined with REDIS_SENTINELS: pick Sentinel or Cluster",
                "REDIS_CLUSTER",
            )
        if data.get("redis_cluster") and data.get("redis_db"):
            raise ValidationError(
                "must be 0 with REDIS_CLUSTER: a cluster has one database", "REDIS_DB"
            )

    @validates(
        "rate_limit_create", "rate_limit_send_ip", "rate_limit_send_session", "rate_limit_feedback"
    )
    def _check_rate_limit(self, value: str, **_: Any) -> None:
        from limits import parse_many

        try:
            parse_many(value)
        except ValueError:
            raise ValidationError(
                "must be a rate such as '30/minute' or '5/second;100/hour'"
            ) from None

    @validates("cors_origins")
    def _check_cors_origins(self, value: tuple[str, ...], **_: Any) -> None:
        # Browsers send Origin as scheme://host[:port]; anything else could never match.
        bad = [origin for origin in value if origin != "*" and not _is_origin(origin)]
        if bad:
            raise ValidationError(
                "each entry must be an origin such as https://chat.example.com "
                f"(scheme://host[:port], no path or trailing slash) or *; got {', '.join(bad)}"
            )

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> Settings:
        return Settings(**data)


def _is_origin(value: str) -> bool:
    parts = urlsplit(value)
    try:
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return False
    return (
        parts.scheme in {"http", "https"}
        and bool(parts.hostname)
        and "@" not in parts.netloc
        and "*" not in value  # matched literally: a wildcard host would silently never match
        and value == f"{parts.scheme}://{parts.netloc}"
    )


_SCHEMA = _SettingsSchema()
#: The Settings attribute each environment variable sets.
ATTRIBUTE_OF = {field.data_key: name for name, field in _SCHEMA.fields.items()}
#: Every environment variable the service reads (the README's configuration table).
VARIABLES = frozenset(ATTRIBUTE_OF)
# Values never echoed in an error message: they may carry credentials.
_SECRETS = {"REDIS_URL", "REDIS_PASSWORD", "REDIS_SENTINEL_PASSWORD", "LLM_API_KEY", "ADMIN_TOKEN"}


def load_settings(
    overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read settings from ``environ`` (default ``os.environ``) with ``overrides`` on top.

    Empty strings count as unset, so ``REDIS_HOST=`` in a ``.env`` file means "not set".
    """
    source = dict(os.environ if environ is None else environ)
    raw = {k: v for k, v in source.items() if k in VARIABLES and v != ""}
    for key, value in (overrides or {}).items():
        if key not in VARIABLES:
            raise ConfigError(f"{key} is not a setting this service knows")
        if value is None or value == "":
            raw.pop(key, None)
        else:
            raw[key] = value
    try:
        return _SCHEMA.load(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{name}={'<hidden>' if name in _SECRETS else repr(raw.get(name))}: "
            f"{' '.join(map(str, msgs))}"
            for name, msgs in sorted(exc.normalized_messages().items())
        )
        raise ConfigError(f"invalid configuration: {problems}") from None
