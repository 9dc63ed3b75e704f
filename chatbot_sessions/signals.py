"""Domain events the store and the chat flow announce, for whoever wants to count them.

Metrics subscribe here (``ops/metrics.py``) so the store and the chat service stay free of
Prometheus; blinker is what Flask's own signals use, and a signal nobody listens to costs
one attribute check. Receivers connect with ``sender=`` their app's store or chat service,
so apps built side by side (as tests do) never see each other's events.
"""

from __future__ import annotations

from blinker import Namespace

_events = Namespace()

#: A session came into existence. Sender: the SessionStore.
session_created = _events.signal("session-created")
#: Messages were appended; kwargs: ``count``. Sender: the SessionStore.
messages_stored = _events.signal("messages-stored")
#: A Redis command failed; kwargs: ``error`` (the redis-py exception). Sender: the SessionStore.
store_error = _events.signal("store-error")
#: A reply was generated; kwargs: ``seconds``, ``question``, ``reply``. Sender: the ChatService.
reply_generated = _events.signal("reply-generated")
#: An answer was rated; kwargs: ``rating`` ("up"/"down"), ``degraded`` (the rated answer's
#: flag). Sender: the SessionStore.
feedback_given = _events.signal("feedback-given")
#: A process serves a knowledge version: its reloader started, a rebuild was swapped in,
#: or the start-up index's version was decided; kwargs: ``version``. Sender: the
#: KnowledgeReloader.
knowledge_served = _events.signal("knowledge-served")
