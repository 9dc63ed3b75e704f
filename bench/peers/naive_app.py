"""Peer (a): the design taken literally. One JSON blob per session; every access is a GET,
then a SETEX of the whole blob (which refreshes the TTL); bare Flask views, no logging,
metrics, limits, validation or atomicity (two concurrent sends lose a turn)."""

from __future__ import annotations

import json

import redis
from flask import Flask, jsonify, request

from bench.peers.common import REDIS_URL, TTL, new_id, now, reply_to

app = Flask(__name__)
client = redis.Redis.from_url(REDIS_URL, decode_responses=True)


def _key(session_id: str) -> str:
    return f"naive:chat_session:{session_id}"


def _load(session_id: str | None) -> dict | None:
    raw = client.get(_key(session_id)) if session_id else None
    return json.loads(raw) if raw else None


def _save(session: dict) -> None:
    session["lastActivity"] = now()
    client.setex(_key(session["sessionId"]), TTL, json.dumps(session))


def _new() -> dict:
    stamp = now()
    return {"sessionId": new_id(), "createdAt": stamp, "lastActivity": stamp, "messages": []}


@app.post("/api/session/create")
def create():
    session = _new()
    _save(session)
    return jsonify(success=True, sessionId=session["sessionId"], message="Session created"), 201


@app.get("/api/session/<session_id>/history")
def history(session_id: str):
    session = _load(session_id)
    if session is None:
        return jsonify(success=False, error="session_not_found"), 404
    _save(session)
    return jsonify(success=True, **session)


@app.get("/api/session/<session_id>/validate")
def validate(session_id: str):
    session = _load(session_id)
    if session is not None:
        _save(session)
    return jsonify(success=True, valid=session is not None, sessionId=session_id)


@app.post("/api/send-message")
def send_message():
    session = _load(request.headers.get("session-id")) or _new()
    question = request.get_json()["question"]
    text, sources = reply_to(question, session["messages"])
    stamp = now()
    session["messages"] += [
        {"type": "user", "content": question, "timestamp": stamp},
        {"type": "assistant", "content": text, "timestamp": stamp, "sources": sources},
    ]
    _save(session)
    return jsonify(success=True, reply=text, sessionID=session["sessionId"], sources=sources)
