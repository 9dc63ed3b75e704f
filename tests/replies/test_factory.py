"""build_generator: the settings decide the generator (``current``, the one a reload
replaces), bad settings stop start-up."""

from __future__ import annotations

import pytest

from chatbot_sessions.replies import build_generator
from chatbot_sessions.replies.extractive import ExtractiveGenerator
from chatbot_sessions.replies.knowledge import KnowledgeDirError
from chatbot_sessions.replies.llm import LLMGenerator
from tests.support.fake_llm import completion, start_fake_llm

SETTINGS = {
    "knowledge_dir": None,
    "retrieval": "bm25",
    "llm_base_url": None,
    "llm_api_key": None,
    "llm_model": "",
    "llm_timeout": 5.0,
    "llm_max_tokens": 256,
    "context_messages": 10,
}


def test_defaults_answer_from_the_shipped_docs_without_network() -> None:
    generator = build_generator(**SETTINGS)
    assert isinstance(generator.current, ExtractiveGenerator)
    reply = generator.generate("Which header carries the session id?", [])
    assert "session-id" in reply.text and reply.degraded is False
    assert reply.sources[0].source == "http-api.md"


def test_knowledge_dir_replaces_the_shipped_docs(make_kb) -> None:
    root = make_kb({"faq.md": "# FAQ\n\n## Opening hours\n\nWe open at nine.\n"})
    generator = build_generator(**{**SETTINGS, "knowledge_dir": str(root)})
    assert generator.retriever.stats.documents == 1
    assert generator.generate("When do you open?", []).text.startswith("We open at nine.")
    assert generator.generate("Which header carries the session id?", []).sources == ()


def test_rebuild_serves_the_changed_folder_with_the_same_llm_client(make_kb) -> None:
    root = make_kb({"faq.md": "# FAQ\n\n## Opening hours\n\nWe open at nine.\n"})
    settings = {**SETTINGS, "knowledge_dir": str(root), "llm_base_url": "http://127.0.0.1:9/v1"}
    generator = build_generator(**{**settings, "llm_model": "m"})
    before, client = generator.current, generator.client
    (root / "faq.md").write_text("# FAQ\n\n## Parking\n\nPark behind the shop.\n")
    (root / "more.md").write_text("# More\n\nMore text.\n")
    retriever = generator.rebuild()
    assert generator.current is not before and generator.retriever is retriever
    assert retriever.stats.documents == 2 and generator.client is client
    assert before.retriever.stats.documents == 1  # what a request in flight still reads
    generator.close()


def test_missing_knowledge_dir_stops_start_up(tmp_path) -> None:
    with pytest.raises(KnowledgeDirError, match="KNOWLEDGE_DIR"):
        build_generator(**{**SETTINGS, "knowledge_dir": str(tmp_path / "typo")})


@pytest.mark.parametrize(
    ("override", "variable"),
    [
        ({"llm_model": ""}, "LLM_MODEL"),
        ({"llm_timeout": 0}, "LLM_TIMEOUT"),
        ({"llm_max_tokens": -1}, "LLM_MAX_TOKENS"),
        ({"context_messages": -2}, "CONTEXT_MESSAGES"),
    ],
)
def test_bad_llm_settings_name_the_variable(override, variable) -> None:
    settings = {**SETTINGS, "llm_base_url": "http://127.0.0.1:9/v1", "llm_model": "m"}
    with pytest.raises(ValueError, match=variable):
        build_generator(**{**settings, **override})


def test_llm_url_gives_the_llm_generator_wired_to_the_settings() -> None:
    server, stop = start_fake_llm()
    try:
        server.respond = lambda body: completion(f"{body['model']}/{body['max_tokens']}")
        generator = build_generator(
            **{
                **SETTINGS,
                "llm_base_url": server.base_url,
                "llm_api_key": "k",
                "llm_model": "small",
                "llm_max_tokens": 77,
                "context_messages": 2,
            }
        )
        assert isinstance(generator.current, LLMGenerator)
        history = [{"type": "user", "content": f"q{i}", "timestamp": "t"} for i in range(3)]
        reply = generator.generate("How do I configure Redis?", history)
        assert reply.text == "small/77" and reply.degraded is False
        sent = server.received[0]
        assert sent.headers["Authorization"] == "Bearer k"
        # two context messages (merged, both user) then the question
        assert [m["content"] for m in sent.body["messages"][1:]] == [
            "q1\n\nq2\n\nHow do I configure Redis?"
        ]
        generator.close()
    finally:
        stop()
