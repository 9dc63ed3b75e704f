"""Gunicorn settings, derived from the same validated settings the app uses.

With a real Redis, ``WEB_CONCURRENCY`` gthread workers share nothing but Redis. With the
embedded store, sessions live inside one process, so exactly one worker runs (threads
still serve requests concurrently).

Metrics: workers share their Prometheus samples through ``PROMETHEUS_MULTIPROC_DIR``
(a fresh temporary directory when unset), so /metrics adds up every worker. Logs: gunicorn's
own lines go to stdout as JSON, like the app's (access lines come from the app).
"""

import os
import shutil
import tempfile

from dotenv import load_dotenv

load_dotenv()

# Must happen before anything imports prometheus_client (chatbot_sessions does): the library
# picks per-process or multiprocess storage once, at import time. Workers inherit the env.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="chatbot-sessions-metrics-")
    os.environ["CHATBOT_SESSIONS_OWNS_METRICS_DIR"] = "1"  # survives a config reload (HUP)

from chatbot_sessions.config import load_settings  # noqa: E402
from chatbot_sessions.serving import split_store_problem  # noqa: E402

_settings = load_settings()  # a bad variable stops the master here, before any fork

bind = f"{_settings.host}:{_settings.port}"
# gthread, with JSON instead of HTML for the requests gunicorn refuses itself (see serving.py).
worker_class = "chatbot_sessions.serving.ThreadWorker"
workers = 1 if _settings.uses_embedded_store else _settings.web_concurrency
threads = _settings.gunicorn_threads
timeout = 60
graceful_timeout = 20
keepalive = 5
accesslog = None
errorlog = "-"
# gunicorn trusts no proxy header from any peer: X-Forwarded-For/-Proto count only through the
# app's ProxyFix, for exactly TRUSTED_PROXIES hops (security/proxy.py). gunicorn's defaults
# would take X-Forwarded-Proto from loopback (forwarded_allow_ips "127.0.0.1,::1") and from
# any Unix-socket peer (always trusted), marking plain HTTP as https, HSTS and all.
forwarded_allow_ips = ""
secure_scheme_headers = {}
forwarder_headers = ""

logconfig_dict = {
    "root": {"level": _settings.log_level, "handlers": []},  # the app installs its own
    "loggers": {
        "gunicorn.error": {
            "level": _settings.log_level,
            "handlers": ["json_stdout"],
            "propagate": False,
        },
        # Off: the app writes the one line per request, with the route template. Gunicorn's
        # line would carry the raw path, and raw paths carry session ids (credentials).
        "gunicorn.access": {"level": "CRITICAL", "handlers": [], "propagate": False},
    },
    "handlers": {
        "json_stdout": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "stream": "ext://sys.stdout",
        }
    },
    "formatters": {"json": {"()": "chatbot_sessions.ops.logs.json_formatter"}},
}


def nworkers_changed(server, new_value, old_value):
    """Refuse any worker count the embedded store cannot serve, wherever it came from.

    This file asks for one worker without Redis, but ``-w``/``GUNICORN_CMD_ARGS`` override
    it; this hook sees the count gunicorn settled on, at start-up (``old_value`` None: refuse
    to start) and on ``TTIN``/reload (keep the old count).
    """
    problem = split_store_problem(_settings, new_value)
    if problem is None:
        return
    if old_value is None:
        _remove_own_metrics_dir()  # on_exit does not run when start-up fails this early
        raise RuntimeError(f"refusing to start: {problem}")  # gunicorn prints it, exits 1
    server.log.error("keeping %s worker(s): %s", old_value, problem)
    server.num_workers = old_value


def on_starting(server):
    """Start from an empty metrics directory: stale files would add old workers' counts."""
    path = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(path, exist_ok=True)
    for name in os.listdir(path):
        if name.endswith(".db"):
            os.remove(os.path.join(path, name))


def worker_exit(server, worker):
    """Close what the worker's app opened (Redis pool, LLM client) as the worker leaves."""
    from chatbot_sessions.extensions import close_app, is_service_app

    wsgi = getattr(worker, "wsgi", None)
    app = getattr(wsgi, "app", wsgi)  # ThreadWorker serves the app through a wrapper
    if is_service_app(app):
        close_app(app)


def child_exit(server, worker):
    """Let prometheus_client drop a dead worker's live-gauge files (counters are kept)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    """Remove the metrics directory if this config created it (an operator's stays)."""
    _remove_own_metrics_dir()


def _remove_own_metrics_dir():
    if os.environ.get("CHATBOT_SESSIONS_OWNS_METRICS_DIR") == "1":
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
