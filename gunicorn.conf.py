"""Gunicorn settings, derived from the same validated settings the app uses.

With a real Redis, ``WEB_CONCURRENCY`` gthread workers share nothing but Redis. With the
embedded store, sessions live inside one process, so exactly one worker runs (threads
still serve requests concurrently).
"""

from dotenv import load_dotenv

from chatbot_sessions.config import load_settings

load_dotenv()
_settings = load_settings()  # a bad variable stops the master here, before any fork

bind = f"{_settings.host}:{_settings.port}"
worker_class = "gthread"
workers = 1 if _settings.uses_embedded_store else _settings.web_concurrency
threads = _settings.gunicorn_threads
timeout = 60
graceful_timeout = 20
keepalive = 5
accesslog = None
errorlog = "-"
# Trust X-Forwarded-* only from the configured number of proxies (see TRUSTED_PROXIES).
forwarded_allow_ips = "127.0.0.1,::1"
