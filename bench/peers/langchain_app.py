"""Peer (b): LangChain's ``RedisChatMessageHistory`` (langchain-community, plain Redis)
behind bare Flask views, used as its documentation shows: one history object per session
id (``RedisChatMessageHistory(session_id, url=..., ttl=...)``), ``.messages`` to read,
``add_user_message`` / ``add_ai_message`` to write. Each object makes its own Redis
client, as documented; the TTL is refreshed on writes only, as the class does.

Installed only in the benchmark's own environment (bench/bench_peers.py makes it).
"""

from __future__ import annotations

from flask import Flask, jsonify, request
from langchain_community.chat_message_histories import RedisChatMessageHistory
from langchain_core.messages import AIMessage

from bench.peers.common import REDIS_URL, TTL, new_id, reply_to

app = Flask(__name__)


def _history(session_id: str) -> RedisChatMessageHistory:
    return RedisChatMessageHistory(session_id, url=REDIS_URL, ttl=TTL)


def _wire(messages) -> list[dict]:
    return [
        {"type": "assistant" if isinstance(m, AIMessage) else "user", "content": m.content}
        for m in messages
    ]


@app.post("/api/session/create")
def create():
    # A LangChain history exists once it holds a message; a new id is all "create" means.
    return jsonify(success=True, sessionId=new_id(), message="Session created"), 201


@app.get("/api/session/<session_id>/history")
def history(session_id: str):
    messages = _history(session_id).messages
    if not messages:
        return jsonify(success=False, error="session_not_found"), 404
    return jsonify(success=True, sessionId=session_id, messages=_wire(messages))


@app.get("/api/session/<session_id>/validate")
def validate(session_id: str):
    valid = bool(_history(session_id).messages)
    return jsonify(success=True, valid=valid, sessionId=session_id)


@app.post("/api/send-message")
def send_message():
    session_id = request.headers.get("session-id") or new_id()
    history = _history(session_id)
    question = request.get_json()["question"]
    text, sources = reply_to(question, _wire(history.messages))
    history.add_user_message(question)
    history.add_ai_message(text)
    return jsonify(success=True, reply=text, sessionID=session_id, sources=sources)
