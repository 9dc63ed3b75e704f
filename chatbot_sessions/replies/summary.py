"""The rolling summary of a long conversation, written by the LLM.

When turns leave the reply's context window (``chatbot_sessions/context.py``) they are
folded into one running summary: the previous summary plus the turns that fell out, asked
of the model with the prompt below. The call has the LLM client's overall deadline
(``LLM_TIMEOUT``); any failure raises ``SummaryFailed`` and the caller keeps the old one.
"""

from __future__ import annotations

from collections.abc import Sequence

from chatbot_sessions.domain import Message
from chatbot_sessions.replies.llm import ChatCompletionsClient, LLMError

SUMMARY_PROMPT = """\
You maintain the memory of a conversation between a user and a documentation assistant. \
Update the summary below with the new turns. Keep every fact, question, decision, name, \
number and preference the user stated, and what the assistant answered, in short \
sentences; drop greetings and repetition. Answer with the updated summary only, at most \
{words} words."""


class SummaryFailed(Exception):
    """The model gave no usable summary; the old one stands."""


class Summariser:
    """Folds turns into a running summary through an OpenAI-compatible endpoint."""

    def __init__(self, client: ChatCompletionsClient, *, max_words: int = 250) -> None:
        self.client = client
        self.max_words = max_words

    def summarise(self, previous: str, turns: Sequence[Message]) -> str:
        """The summary of ``previous`` followed by ``turns`` (oldest first)."""
        transcript = "\n".join(f"{m['type']}: {m['content']}" for m in turns)
        messages = [
            {"role": "system", "content": SUMMARY_PROMPT.format(words=self.max_words)},
            {
                "role": "user",
                "content": f"Summary so far:\n{previous or '(none yet)'}\n\n"
                f"New turns:\n{transcript}",
            },
        ]
        try:
            return self.client.complete(messages)
        except LLMError as exc:
            raise SummaryFailed(str(exc)) from exc
