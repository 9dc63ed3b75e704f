"""Fixtures for the operations tests: JSON log capture and the admin token."""

from __future__ import annotations

import json

import pytest

ADMIN_TOKEN = "s3cret-admin-token"


@pytest.fixture
def json_logs(capsys):
    """Return a function giving the JSON records written to stdout so far (all must parse)."""

    def read() -> list[dict]:
        out = capsys.readouterr().out
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    return read
