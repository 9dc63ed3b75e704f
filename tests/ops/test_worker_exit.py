"""gunicorn.conf.py's worker_exit closes the app a worker served (pools, LLM client)."""

from __future__ import annotations

import runpy
from pathlib import Path
from types import SimpleNamespace

import pytest

from chatbot_sessions.extensions import resources

CONF = Path(__file__).resolve().parents[2] / "gunicorn.conf.py"


@pytest.mark.parametrize("wrapped", [True, False])
def test_worker_exit_closes_the_app_behind_the_workers_wrapper(app, wrapped):
    closed = []
    resources(app).on_close(lambda: closed.append(True))

    def serve(environ, start_response):  # what ThreadWorker.load_wsgi puts in worker.wsgi
        return app(environ, start_response)

    serve.app = app
    worker = SimpleNamespace(wsgi=serve if wrapped else app)
    runpy.run_path(str(CONF))["worker_exit"](None, worker)
    assert closed == [True]
