"""Exactly-once writes when Redis replies are lost (issue 9), through a real gunicorn.

The service reaches its own redis-server through the fault proxy, which lets a write run
and then loses its reply, the one failure where a retry can store a turn twice. The test
reads Redis directly, never through the proxy, and knows only this much of the layout:
a session's own key is ``chat_session:{<id>}``, every key of a session contains its id,
and its messages are the list among those keys, one entry per message, read back with
``decode_message``.

The contract: a write the client was told succeeded happened exactly once; one it was told
failed happened at most once; no status is a 500, a 404 for a delete that deleted, or a
replay on a key's first attempt.
"""

from __future__ import annotations

import contextlib
import random
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis
import requests
from requests import Response

from chatbot_sessions.sessions.codec import decode_message
from tests.support.fault_proxy import SCRIPT_CALLS, FaultProxy
from tests.support.processes import GunicornServer, wait_until

pytestmark = [pytest.mark.redis, pytest.mark.gunicorn, pytest.mark.slow]

SESSION_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
HTTP_TIMEOUT = 5
REPLAYED = "Idempotent-Replayed"
# No request of the service makes more script calls than this; the sweep stops sooner.
MAX_SCRIPT_CALLS = 8


def meta_key(session_id: str) -> str:
    """The session's own key: it exists exactly while the session does."""
    return f"chat_session:{{{session_id}}}"


def session_of(key: str) -> str | None:
    """The session id a key contains, if any."""
    found = SESSION_ID.search(key)
    return found.group() if found else None


@pytest.fixture(scope="module")
def service(fault_proxy, tmp_path_factory) -> Iterator[GunicornServer]:
    """The service under gunicorn, its Redis behind the fault proxy."""
    server = GunicornServer(
        {
            "REDIS_URL": fault_proxy.url,
            "REDIS_SOCKET_TIMEOUT": "1",
            "REDIS_CONNECT_TIMEOUT": "1",
            "RATE_LIMIT_ENABLED": "0",
            "WEB_CONCURRENCY": "2",
            "GUNICORN_THREADS": "4",
            "LLM_TIMEOUT": "1",  # an Idempotency-Key lease outlives its request by this + 2 s
        },
        tmp_path_factory.mktemp("gunicorn"),
    ).start()
    wait_until(lambda: len(server.worker_pids()) == 2, 10, what="both workers booted")
    yield server
    server.stop()


@dataclass(frozen=True)
class Stored:
    """What Redis holds, read directly: every key and each session's messages."""

    keys: list[str]
    messages: dict[str, list[dict[str, Any]]]

    @classmethod
    def read(cls, client: redis.Redis) -> Stored:
        """SCAN everything (our own server: only the service's keys), then read the lists."""
        keys = list(client.scan_iter(count=1000))
        with client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.type(key)
            types = pipe.execute()
        lists = [key for key, kind in zip(keys, types, strict=True) if kind == "list"]
        with client.pipeline(transaction=False) as pipe:
            for key in lists:
                pipe.lrange(key, 0, -1)
            entries = pipe.execute()
        messages: dict[str, list[dict[str, Any]]] = {}
        for key, raw in zip(lists, entries, strict=True):
            sid = session_of(key)
            assert sid, f"a list that belongs to no session: {key}"
            # Ids are not compared here: the list index stands in for each position.
            messages[sid] = [dict(decode_message(entry, i)) for i, entry in enumerate(raw)]
        return cls(keys, messages)

    @property
    def sessions(self) -> set[str]:
        """The ids of the sessions that exist (their own key does)."""
        return {sid for key in self.keys if (sid := session_of(key)) and key == meta_key(sid)}

    def keys_with(self, session_id: str) -> list[str]:
        return [key for key in self.keys if session_id in key]

    def questions(self, session_id: str) -> list[str]:
        """The session's user turns, oldest first."""
        return [m["content"] for m in self.messages.get(session_id, []) if m["type"] == "user"]

    def places(self) -> dict[str, list[str]]:
        """Each stored question and the sessions holding it, one entry per copy."""
        found: dict[str, list[str]] = {}
        for session_id, messages in self.messages.items():
            for i, message in enumerate(messages):
                if message["type"] == "user":
                    answered = i + 1 < len(messages) and messages[i + 1]["type"] == "assistant"
                    assert answered, f"a question stored without its answer in {session_id}"
                    found.setdefault(message["content"], []).append(session_id)
        return found


# -- one request, one lost reply ----------------------------------------------------------


@dataclass
class Trial:
    """One request of the sweep: the service, direct Redis, and which script call of the
    request loses its reply."""

    base: str
    direct: redis.Redis
    proxy: FaultProxy
    call: int
    fired: bool = False
    http: requests.Session = field(default_factory=requests.Session)

    def faulted(self, request: Callable[[], Response]) -> tuple[Stored, Response, Stored]:
        """Make ``request`` with the fault armed: (what Redis held before, the answer, what
        it holds after). The fault is disarmed right after, so the checks that follow (a
        retry among them) run fault-free; ``fired`` says whether it went off."""
        before = self.stored()
        self.proxy.swallow_next_reply(SCRIPT_CALLS, after=self.call - 1)
        try:
            response = request()
        finally:
            self.fired = not self.proxy.armed()
            self.proxy.clear()
        return before, response, self.stored()

    def stored(self) -> Stored:
        return Stored.read(self.direct)

    def create(self) -> Response:
        return self.http.post(f"{self.base}/api/session/create", timeout=HTTP_TIMEOUT)

    def send(
        self, question: str, session_id: str | None = None, key: str | None = None
    ) -> Response:
        headers = {"session-id": session_id} if session_id else {}
        if key:
            headers["Idempotency-Key"] = key
        return self.http.post(
            f"{self.base}/api/send-message",
            json={"question": question},
            headers=headers,
            timeout=HTTP_TIMEOUT,
        )

    def delete(self, session_id: str) -> Response:
        return self.http.delete(f"{self.base}/api/session/{session_id}", timeout=HTTP_TIMEOUT)

    def session(self) -> str:
        """A session holding one exchange, made before the fault is armed."""
        response = self.send(f"setup {uuid.uuid4()}")
        assert response.status_code == 200, response.text
        return response.json()["sessionId"]


def answered(response: Response, expected: int) -> list[str]:
    """A first attempt's answer: the success status, and not a replay."""
    problems = []
    if response.status_code != expected:
        problems.append(
            f"status {response.status_code}, not {expected}: {response.text.strip()[:150]}"
        )
    if response.headers.get(REPLAYED) == "true":
        problems.append("a first attempt answered as a replay")
    return problems


def stored_once(after: Stored, question: str, session_id: str | None) -> list[str]:
    """The exchange is in Redis exactly once, in the session the client was told of."""
    places = after.places().get(question, [])
    if places != [session_id]:
        return [f"the exchange is stored {len(places)}x (in {places}), not once in {session_id}"]
    return []


def names_its_answer(response: Response, after: Stored, question: str) -> list[str]:
    """The answer's ``messageId`` is its id in history (no trims here: its list index)."""
    if not response.ok:
        return []
    body = response.json()
    messages = after.messages.get(body["sessionId"], [])
    at = [i + 1 for i, m in enumerate(messages) if m["type"] == "user" and m["content"] == question]
    if at != [body.get("messageId")]:
        return [f"messageId {body.get('messageId')}, but the answer is at {at}"]
    return []


def new_sessions(before: Stored, after: Stored, expected: set[str]) -> list[str]:
    """The request created these sessions and no others (no orphans) and removed none."""
    created, gone = after.sessions - before.sessions, before.sessions - after.sessions
    if created != expected:
        return [f"sessions created: {sorted(created)}, expected {sorted(expected)}"]
    if gone:
        return [f"sessions gone: {sorted(gone)}"]
    return []


def retried(trial: Trial, question: str, sid: str | None, key: str, first: Response) -> list[str]:
    """The client sends the keyed request again, as it was: the first answer comes back (a
    replay) and nothing is stored anew."""
    again = trial.send(question, sid, key)
    if again.status_code != 200:
        return [f"the retry got {again.status_code}: {again.text.strip()[:150]}"]
    if first.ok and (again.headers.get(REPLAYED) != "true" or again.json() != first.json()):
        return ["the retry was not a replay of the first answer"]
    return stored_once(trial.stored(), question, again.json()["sessionId"])


def answered_sid(response: Response) -> str | None:
    """The session a send's answer names, if it succeeded."""
    return response.json().get("sessionId") if response.ok else None


def plain_send_into_a_session(trial: Trial) -> list[str]:
    sid, question = trial.session(), f"plain {uuid.uuid4()}"
    before, response, after = trial.faulted(lambda: trial.send(question, sid))
    return (
        answered(response, 200)
        + stored_once(after, question, sid)
        + names_its_answer(response, after, question)
        + new_sessions(before, after, set())
    )


def plain_send_without_a_session(trial: Trial) -> list[str]:
    question = f"sessionless {uuid.uuid4()}"
    before, response, after = trial.faulted(lambda: trial.send(question))
    sid = answered_sid(response)
    return (
        answered(response, 200)
        + stored_once(after, question, sid)
        + names_its_answer(response, after, question)
        + new_sessions(before, after, {sid} if sid else set())
    )


def create_a_session(trial: Trial) -> list[str]:
    before, response, after = trial.faulted(trial.create)
    sid = response.json().get("sessionId") if response.status_code == 201 else None
    problems = answered(response, 201) + new_sessions(before, after, {sid} if sid else set())
    if sid and not trial.direct.exists(meta_key(sid)):
        problems.append(f"the 201 session {sid} does not exist")
    return problems


def delete_a_session(trial: Trial) -> list[str]:
    sid = trial.session()
    before, response, after = trial.faulted(lambda: trial.delete(sid))
    problems = answered(response, 200)
    if after.keys_with(sid):
        problems.append(f"keys of the deleted session remain: {after.keys_with(sid)}")
    if before.sessions - after.sessions != {sid} or after.sessions - before.sessions:
        problems.append("other sessions than the deleted one came or went")
    return problems


def keyed_send_into_a_session(trial: Trial) -> list[str]:
    sid, question, key = trial.session(), f"keyed {uuid.uuid4()}", str(uuid.uuid4())
    before, response, after = trial.faulted(lambda: trial.send(question, sid, key))
    return (
        answered(response, 200)
        + stored_once(after, question, sid)
        + names_its_answer(response, after, question)
        + new_sessions(before, after, set())
        + retried(trial, question, sid, key, response)
    )


def keyed_send_without_a_session(trial: Trial) -> list[str]:
    question, key = f"keyed sessionless {uuid.uuid4()}", str(uuid.uuid4())
    before, response, after = trial.faulted(lambda: trial.send(question, None, key))
    sid = answered_sid(response)
    return (
        answered(response, 200)
        + stored_once(after, question, sid)
        + names_its_answer(response, after, question)
        + new_sessions(before, after, {sid} if sid else set())
        + retried(trial, question, None, key, response)
    )


WRITES = [
    plain_send_into_a_session,
    plain_send_without_a_session,
    create_a_session,
    delete_a_session,
    keyed_send_into_a_session,
    keyed_send_without_a_session,
]


@pytest.mark.parametrize("write", WRITES, ids=[w.__name__ for w in WRITES])
def test_a_lost_reply_changes_nothing_the_client_sees(write, service, proxy, direct):
    """The reply of the request's 1st script call is lost, then (a fresh request) that of
    its 2nd, and so on until a request makes no further call: whichever reply is lost, the
    client gets its success and the write happened exactly once."""
    problems: list[str] = []
    fired = 0
    for call in range(1, MAX_SCRIPT_CALLS + 1):
        before = proxy.stats()
        trial = Trial(service.base_url, direct, proxy, call)
        with trial.http:
            found = write(trial)
        if not trial.fired:  # the request made fewer script calls than ``call``
            problems += [f"with no reply lost: {problem}" for problem in found]
            break
        assert proxy.stats().since(before).replies_dropped == 1
        fired += 1
        problems += [f"reply of script call {call} lost: {problem}" for problem in found]
    else:
        pytest.fail(f"the request made more than {MAX_SCRIPT_CALLS} script calls")
    print(f"{write.__name__}: {fired} lost replies tried, {len(problems)} problems")
    assert fired, "the request made no script call: nothing was tested"
    assert not problems, "\n".join(problems)


# -- many conversations, 1 in 8 script replies lost -----------------------------------------

CONVERSATIONS = 120
CLIENT_THREADS = 10
ONE_IN = 8
KEYED_ATTEMPTS = 5
LOAD_DEADLINE = 40  # seconds for the load itself; the test must end well inside a minute


@dataclass
class Turn:
    """One question of a conversation and every attempt's status (0: no HTTP answer)."""

    question: str
    key: str | None
    statuses: list[int] = field(default_factory=list)
    replayed_first: bool = False
    session_id: str | None = None  # the session its 200 named

    @property
    def acknowledged(self) -> bool:
        return self.statuses[-1:] == [200]


@dataclass
class Conversation:
    """Create, a few plain and keyed sends, and for some a delete; what each call got."""

    index: int
    creates: list[int] = field(default_factory=list)
    created: str | None = None
    turns: list[Turn] = field(default_factory=list)
    moved: int = 0
    deleted: str | None = None  # the session the delete named
    delete_status: int | None = None
    finished: bool = False

    @property
    def deletes(self) -> bool:
        return self.index % 4 == 3

    def statuses(self) -> Iterator[tuple[str, int]]:
        """(endpoint, status) of every call, retries included."""
        yield from (("create", status) for status in self.creates)
        for turn in self.turns:
            yield from (("keyed" if turn.key else "send", status) for status in turn.statuses)
        if self.delete_status is not None:
            yield "delete", self.delete_status


class Client:
    """One conversation's HTTP calls: each bounded by a timeout, none begun after the
    deadline; a call without an HTTP answer is status 0."""

    def __init__(self, base: str, deadline: float) -> None:
        self.base = base
        self.deadline = deadline
        self.http = requests.Session()

    def __call__(self, method: str, path: str, **kwargs: Any) -> Response | None:
        if time.monotonic() > self.deadline:
            raise TimeoutError("the load ran past its deadline")
        try:
            return self.http.request(method, f"{self.base}{path}", timeout=HTTP_TIMEOUT, **kwargs)
        except requests.RequestException:
            return None


def status_of(response: Response | None) -> int:
    """The HTTP status, 0 for no answer at all."""
    return response.status_code if response is not None else 0


def converse(base: str, index: int, deadline: float) -> Conversation:
    """Drive one conversation; one that reaches the deadline stops, reported unfinished."""
    conversation = Conversation(index)
    client = Client(base, deadline)
    with contextlib.suppress(TimeoutError), client.http:
        talk(conversation, client)
        conversation.finished = True
    return conversation


def talk(conversation: Conversation, client: Client) -> None:
    """Create a session, send 2-3 plain and 1-2 keyed questions in a seeded order (a keyed
    one retried on 503, 409 or no answer), and delete the session if it is every 4th."""
    for _ in range(3):
        response = client("POST", "/api/session/create")
        conversation.creates.append(status_of(response))
        if status_of(response) == 201:
            conversation.created = response.json()["sessionId"]
            break
    if conversation.created is None:
        return
    sid = conversation.created
    rng = random.Random(conversation.index)
    kinds = ["plain"] * rng.randint(2, 3) + ["keyed"] * rng.randint(1, 2)
    rng.shuffle(kinds)
    for n, kind in enumerate(kinds):
        key = str(uuid.uuid4()) if kind == "keyed" else None
        turn = Turn(f"c{conversation.index} t{n} {uuid.uuid4().hex[:8]}", key)
        conversation.turns.append(turn)
        headers = {"session-id": sid, **({"Idempotency-Key": key} if key else {})}
        for attempt in range(KEYED_ATTEMPTS if key else 1):
            if attempt:
                time.sleep(0.2)
            response = client(
                "POST", "/api/send-message", json={"question": turn.question}, headers=headers
            )
            turn.statuses.append(status_of(response))
            if status_of(response) == 200:
                turn.replayed_first = not attempt and response.headers.get(REPLAYED) == "true"
                turn.session_id = response.json()["sessionId"]
                if turn.session_id != sid:  # the client follows the service, as the widget does
                    conversation.moved += 1
                    sid = turn.session_id
                break
            if status_of(response) not in (0, 409, 503):
                break
    if conversation.deletes:
        conversation.deleted = sid
        conversation.delete_status = status_of(client("DELETE", f"/api/session/{sid}"))


def first_occurrences_in_order(stored: list[str], expected: list[str]) -> bool:
    """Whether the expected questions that were stored come in the order they were asked
    (repeats are counted as duplicates elsewhere, missing ones as lost)."""
    firsts = list(dict.fromkeys(q for q in stored if q in set(expected)))
    return firsts == [q for q in expected if q in firsts]


def judge(conversations: list[Conversation], after: Stored) -> tuple[Counter, list[str]]:
    """Count each way the contract was broken, with an example of each."""
    broken: Counter = Counter()
    examples: dict[str, str] = {}

    def flag(what: str, example: object, n: int = 1) -> None:
        broken[what] += n
        examples.setdefault(what, str(example))

    places = after.places()
    for question, where in places.items():
        if len(where) > 1:
            flag("stored twice", f"{question!r} in {where}", len(where) - 1)
    for c in conversations:
        for endpoint, status in c.statuses():
            if status == 500:
                flag("500", f"{endpoint} in conversation {c.index}")
        if c.moved:
            flag("live session not found", f"conversation {c.index}", c.moved)
        for turn in c.turns:
            if turn.key and turn.statuses[0] == 409:
                flag("409 for a key used once", turn)
            if turn.replayed_first:
                flag("first attempt answered as a replay", turn)
        if c.deleted:
            if c.delete_status == 200 and after.keys_with(c.deleted):
                flag("200 delete left keys", after.keys_with(c.deleted))
            if c.delete_status == 404:  # it was created (201) and nothing else deletes
                flag("404 deleting a live session", f"conversation {c.index}")
            continue  # its turns went with it
        if c.created and c.created not in after.sessions and not c.moved:
            flag("201 session missing", f"conversation {c.index}: {c.created}")
        acked = [t for t in c.turns if t.acknowledged]
        for turn in acked:
            if not places.get(turn.question):
                flag("acknowledged turn lost", turn)
            elif turn.session_id not in places[turn.question]:
                flag("acknowledged turn in another session", turn)
        for sid in {t.session_id for t in acked}:
            mine = [t.question for t in acked if t.session_id == sid]
            if not first_occurrences_in_order(after.questions(sid), mine):
                flag("turns out of order", f"{sid}: {after.questions(sid)} vs {mine}")
    return broken, [f"{what}: e.g. {example}" for what, example in examples.items()]


def orphans(conversations: list[Conversation], after: Stored) -> set[str]:
    """Sessions in Redis that no answer named: left by failed creates or sends. Reported,
    not failed on: a create that timed out may leave one, and it expires with its TTL."""
    named = {c.created for c in conversations} | {
        t.session_id for c in conversations for t in c.turns
    }
    return after.sessions - named


def status_counts(conversations: list[Conversation]) -> str:
    """Every status by endpoint, retries included, for the summary line."""
    counts: dict[str, Counter] = {name: Counter() for name in ("create", "send", "keyed", "delete")}
    for c in conversations:
        for endpoint, status in c.statuses():
            counts[endpoint][status] += 1
    return "; ".join(
        f"{name} " + " ".join(f"{status}x{n}" for status, n in sorted(counter.items()))
        for name, counter in counts.items()
    )


def test_conversations_survive_one_in_eight_lost_script_replies(service, proxy, direct):
    before = proxy.stats()
    proxy.lose_replies(ONE_IN, seed=9)
    started = time.monotonic()
    with ThreadPoolExecutor(CLIENT_THREADS) as pool:
        futures = [
            pool.submit(converse, service.base_url, i, started + LOAD_DEADLINE)
            for i in range(CONVERSATIONS)
        ]
        conversations = [future.result() for future in futures]
    elapsed = time.monotonic() - started
    proxy.clear()
    seen = proxy.stats().since(before)
    after = Stored.read(direct)
    broken, examples = judge(conversations, after)

    turns = sum(len(c.turns) for c in conversations)
    script_calls = sum(seen.commands[name] for name in SCRIPT_CALLS)
    summary = (
        f"lost replies: {len(conversations)} conversations, {turns} turns, "
        f"{seen.replies_dropped} of {script_calls} script replies dropped, in {elapsed:.1f}s; "
        f"duplicates {broken['stored twice']}, lost {broken['acknowledged turn lost']}, "
        f"orphan sessions {len(orphans(conversations, after))}; "
        f"statuses: {status_counts(conversations)}; broken: {dict(broken) or 'nothing'}"
    )
    print(summary)
    assert all(c.finished for c in conversations), summary
    assert seen.replies_dropped > turns // 10, summary  # the faults really happened
    assert not broken, "\n".join([summary, *examples])
