"""Session and reply ids: fresh, unguessable, and in the one form keys use."""

from __future__ import annotations

import uuid

from chatbot_sessions.sessions.ids import new_reply_id, new_session_id, parse_session_id


def test_a_new_session_id_is_a_canonical_uuid4():
    ids = [new_session_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for sid in ids:
        parsed = uuid.UUID(sid)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
        assert str(parsed) == sid and parse_session_id(sid) == sid
    # The 122 random bits are random: every hex digit outside the fixed ones turns up.
    free = "".join(sid.replace("-", "")[:12] + sid.replace("-", "")[13:16] for sid in ids)
    assert set(free) == set("0123456789abcdef")


def test_the_id_check_takes_only_uuid4_text_in_either_case():
    sid = new_session_id()
    assert parse_session_id(sid.upper()) == sid
    assert parse_session_id(sid[:-1]) is None and parse_session_id(sid + "0") is None
    assert parse_session_id(str(uuid.uuid1())) is None  # a UUID, but not version 4
    assert parse_session_id(sid.replace("-", "_")) is None
    assert parse_session_id(None) is None and parse_session_id("x" * 10_000) is None


def test_reply_ids_are_128_random_bits_in_hex():
    ids = {new_reply_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(len(r) == 32 and int(r, 16) >= 0 for r in ids)
