/*
 * chatbot-sessions chat widget: plain JavaScript, no build step, no dependencies.
 *
 * Embed on any page (adds a floating button and panel):
 *   <script src="https://chat.example.com/widget.js" data-api="https://chat.example.com" defer></script>
 * Or fill an element with the chat (what the service's own page at / does):
 *   <script src="/widget.js" data-mount="#chat" defer></script>
 *
 * Attributes: data-api (service base URL; default: where widget.js came from), data-mount
 * (CSS selector of the element to fill; default: floating launcher), data-title.
 *
 * Answers are streamed (Server-Sent Events read from fetch, so text shows as it is written,
 * with a Stop button), and a page loaded mid-answer picks the answer up where the server is.
 *
 * Every finished answer has thumbs up / down under it (toggle buttons showing its stored
 * rating); a rating goes to the server at once and a later one replaces it.
 *
 * Nothing from the server is ever parsed as HTML: a question is shown as plain text, an
 * answer as a small Markdown subset built node by node (its text only ever in text nodes,
 * links only to http(s) URLs). There is no inline script or style anywhere, so pages with a
 * strict Content-Security-Policy can use it.
 */
(() => {
  "use strict";

  const script = document.currentScript;
  if (!script) {
    return; // loaded as a module or injected in a way we cannot locate ourselves
  }
  const API_BASE = (script.dataset.api || new URL(script.src, document.baseURI).origin).replace(
    /\/+$/,
    "",
  );
  const CSS_URL = new URL("widget.css", script.src).href;
  const TITLE = script.dataset.title || "Chat";
  const MOUNT = script.dataset.mount || "";
  const STORAGE_KEY = `chatbot-sessions:session:${API_BASE}`;
  const HISTORY_PAGE = 100;
  // With no byte for this long a request is given up (a stream's keep-alives come every 15 s).
  const REQUEST_TIMEOUT_MS = 60000;
  // A stream cut after its start is picked up again this many times, waiting 1 s, 2 s, ...
  const RESUME_ATTEMPTS = 3;
  const RESUME_DELAY_MS = 1000;
  // A rating that could not be saved says so under its answer for this long.
  const RATING_NOTICE_MS = 8000;
  const RATINGS = { up: "Helpful", down: "Not helpful" };
  let instances = 0;

  /** A failed API call: HTTP status (0 for network failure), error code, Retry-After. */
  class ApiError extends Error {
    constructor(status, code, message, retryAfter) {
      super(message || code || `HTTP ${status}`);
      this.status = status;
      this.code = code || "";
      this.retryAfter = retryAfter;
    }
  }

  /** An `error` event ending a streamed reply: the server's envelope, after a 200. */
  class StreamError extends ApiError {
    constructor(envelope) {
      super(200, envelope.error, envelope.message);
    }
  }

  /** A stream that ended (or broke) before its `done` or `error` event. */
  function cutOff(message) {
    return new ApiError(0, "interrupted", message || "The answer was cut off.");
  }

  /**
   * Server-Sent Events, parsed incrementally: push() text as it arrives, split anywhere (in
   * a line, in an event, between CR and LF); `onEvent({id, event, data})` runs per event.
   * Follows the HTML standard's rules: CRLF, LF or CR ends a line, a line starting with ":"
   * is a comment, several `data:` lines join with "\n", `id` carries over to later events.
   */
  class SseParser {
    constructor(onEvent) {
      this.onEvent = onEvent;
      this.rest = "";
      this.lastId = "";
      this.event = "";
      this.data = [];
    }

    push(text) {
      const buffer = this.rest + text;
      const endings = /\r\n|\r|\n/g;
      let from = 0;
      let match;
      while ((match = endings.exec(buffer))) {
        // A CR that ends the buffer may be the first half of a CRLF: wait for more.
        if (match[0] === "\r" && match.index === buffer.length - 1) break;
        this.line(buffer.slice(from, match.index));
        from = endings.lastIndex;
      }
      this.rest = buffer.slice(from);
    }

    /** The stream ended: a final lone CR still ends its line; an unfinished event is dropped. */
    end() {
      if (this.rest.endsWith("\r")) this.line(this.rest.slice(0, -1));
      this.rest = "";
    }

    line(line) {
      if (line === "") {
        this.dispatch();
        return;
      }
      if (line[0] === ":") return; // a comment (the server's keep-alive)
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value[0] === " ") value = value.slice(1);
      if (field === "event") this.event = value;
      else if (field === "data") this.data.push(value);
      else if (field === "id" && !value.includes("\0")) this.lastId = value;
      // "retry" and unknown fields: nothing to do for a fetch-based reader.
    }

    dispatch() {
      const event = { id: this.lastId, event: this.event || "message", data: this.data.join("\n") };
      const empty = this.data.length === 0;
      this.event = "";
      this.data = [];
      if (!empty) this.onEvent(event);
    }
  }

  /** Re-arms a timer on every sign of life; aborts the request when none came for too long. */
  function watchdog(controller) {
    let timer = 0;
    return {
      arm() {
        clearTimeout(timer);
        timer = setTimeout(() => controller.abort(), REQUEST_TIMEOUT_MS);
      },
      cancel() {
        clearTimeout(timer);
      },
    };
  }

  /**
   * Read a text/event-stream body to its `done` event; `onEvent(name, data, id)` runs for
   * every event with JSON data. Resolves with `done`'s data; rejects with a StreamError on
   * `error`, with cutOff() when the body ends or breaks first.
   */
  async function readEvents(body, guard, onEvent) {
    const reader = body.getReader();
    const decoder = new TextDecoder(); // stream mode keeps a UTF-8 character split in two
    let final = null;
    const parser = new SseParser(({ id, event, data }) => {
      if (final) return;
      let payload;
      try {
        payload = JSON.parse(data);
      } catch {
        return; // not one of ours
      }
      if (!payload || typeof payload !== "object") return;
      if (event === "done" || event === "error") final = { event, payload };
      onEvent(event, payload, id);
    });
    try {
      while (!final) {
        const { value, done } = await reader.read();
        if (done) {
          parser.push(decoder.decode());
          parser.end();
          break;
        }
        guard.arm();
        parser.push(decoder.decode(value, { stream: true }));
      }
    } catch (err) {
      if (!final) throw cutOff(String(err && err.message));
    } finally {
      if (final) reader.cancel().catch(() => {}); // nothing more to read: free the connection
    }
    if (!final) throw cutOff();
    if (final.event === "error") throw new StreamError(final.payload);
    return final.payload;
  }

  /** The service's HTTP API, as the widget uses it. */
  class ChatApi {
    constructor(base) {
      this.base = base;
    }

    /** Send a request; resolves with the response once its headers are in. */
    async open(method, path, { body, sessionId, idempotencyKey, accept }, guard, signal) {
      const headers = { Accept: accept || "application/json" };
      if (body !== undefined) headers["Content-Type"] = "application/json";
      if (sessionId) headers["session-id"] = sessionId;
      if (idempotencyKey) headers["Idempotency-Key"] = idempotencyKey;
      guard.arm();
      try {
        return await fetch(this.base + path, {
          method,
          headers,
          body: body === undefined ? undefined : JSON.stringify(body),
          credentials: "omit",
          cache: "no-store",
          signal,
        });
      } catch (err) {
        // A refused CORS grant, a dropped connection and a timeout all land here.
        throw new ApiError(0, "network", String(err && err.message));
      }
    }

    /** A JSON answer's data, or its error envelope as an ApiError. */
    async json(response) {
      let data = null;
      try {
        data = await response.json();
      } catch {
        data = null;
      }
      if (!response.ok) {
        const retryAfter = Number.parseInt(response.headers.get("Retry-After") || "", 10);
        throw new ApiError(
          response.status,
          data && data.error,
          data && data.message,
          Number.isFinite(retryAfter) ? retryAfter : undefined,
        );
      }
      return data || {};
    }

    async call(method, path, options = {}) {
      const controller = new AbortController();
      const guard = watchdog(controller);
      try {
        const response = await this.open(method, path, options, guard, controller.signal);
        return await this.json(response);
      } finally {
        guard.cancel();
      }
    }

    /**
     * A request answered with Server-Sent Events: resolves with the `done` event's data. A
     * JSON answer instead (an error before any writing, or a server that does not stream)
     * is handled as by call(). The timeout counts from the last byte, not the first.
     */
    async stream(method, path, options, onEvent) {
      const controller = new AbortController();
      const guard = watchdog(controller);
      try {
        const response = await this.open(
          method,
          path,
          { ...options, accept: "text/event-stream, application/json;q=0.9" },
          guard,
          controller.signal,
        );
        const type = response.headers.get("Content-Type") || "";
        if (!response.ok || !response.body || !type.startsWith("text/event-stream")) {
          return await this.json(response);
        }
        return await readEvents(response.body, guard, onEvent);
      } finally {
        guard.cancel();
      }
    }

    create() {
      return this.call("POST", "/api/session/create");
    }

    validate(id) {
      return this.call("GET", `/api/session/${encodeURIComponent(id)}/validate`);
    }

    history(id, before, limit = HISTORY_PAGE) {
      const query = new URLSearchParams({ limit: String(limit) });
      if (before !== undefined && before !== null) query.set("before", String(before));
      return this.call("GET", `/api/session/${encodeURIComponent(id)}/history?${query}`);
    }

    remove(id) {
      return this.call("DELETE", `/api/session/${encodeURIComponent(id)}`);
    }

    /** Rate the answer `messageId` (its `id` in history) "up" or "down"; replaces any earlier. */
    rate(id, messageId, rating) {
      const path = `/api/session/${encodeURIComponent(id)}/messages/${encodeURIComponent(messageId)}`;
      return this.call("POST", `${path}/feedback`, { body: { rating } });
    }

    /**
     * Ask a question, following the answer as it is written (see stream()); retries of one
     * question must reuse its key (see newIdempotencyKey).
     */
    send(id, question, idempotencyKey, onEvent) {
      const options = { body: { question }, sessionId: id, idempotencyKey };
      return this.stream("POST", "/api/send-message", options, onEvent);
    }

    /** Follow a reply again: its events after number `after`, then live until it ends. */
    events(id, replyId, after, onEvent) {
      // ?after= rather than Last-Event-ID: no custom header, so no CORS preflight.
      const path = `${this.reply(id, replyId)}/events?after=${encodeURIComponent(after)}`;
      return this.stream("GET", path, {}, onEvent);
    }

    /** Ask the server to stop writing a reply; its stream then ends with `done` (stopped). */
    stop(id, replyId) {
      return this.call("POST", `${this.reply(id, replyId)}/stop`);
    }

    reply(id, replyId) {
      return `/api/session/${encodeURIComponent(id)}/replies/${encodeURIComponent(replyId)}`;
    }
  }

  /**
   * A fresh random key (UUID v4) for one question. A failed send may still have been stored
   * (the connection broke after the server appended), so every retry of that question sends
   * the same key and the server replays its reply instead of storing the turn twice.
   */
  function newIdempotencyKey() {
    const { crypto } = window;
    if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
    // randomUUID exists only in secure contexts (https, localhost); a page embedding the
    // widget over plain http still has getRandomValues.
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    bytes[6] = (bytes[6] & 0x0f) | 0x40; // version 4
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 4122 variant
    const hex = Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
    return hex.replace(/^(.{8})(.{4})(.{4})(.{4})/, "$1-$2-$3-$4-");
  }

  /** One string kept in localStorage under `key` (in memory where storage is blocked). */
  function storedValue(key) {
    return {
      memory: null,
      get() {
        try {
          return window.localStorage.getItem(key) || this.memory;
        } catch {
          return this.memory;
        }
      },
      set(value) {
        this.memory = value;
        try {
          if (value) window.localStorage.setItem(key, value);
          else window.localStorage.removeItem(key);
        } catch {
          /* storage blocked (private mode, sandboxed frame): memory still holds it */
        }
      },
    };
  }

  /** The session id. */
  const sessionStore = storedValue(STORAGE_KEY);

  /**
   * The reply being written, as {sessionId, replyId, question}, so that a page loaded while
   * it is written (a reload, a second page of the site) shows it to its end.
   */
  const pendingReply = {
    value: storedValue(`chatbot-sessions:reply:${API_BASE}`),
    get() {
      try {
        const pending = JSON.parse(this.value.get() || "null");
        return pending && pending.sessionId && pending.replyId ? pending : null;
      } catch {
        return null;
      }
    },
    set(pending) {
      this.value.set(pending ? JSON.stringify(pending) : null);
    },
  };

  /** Build an element; text goes in as textContent, attributes via setAttribute. */
  function el(tag, { cls, text, attrs } = {}, children = []) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
    for (const child of children) node.append(child);
    return node;
  }

  const CHAT_ICON = "M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4H4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z";
  // A thumb up; CSS turns it upside down for "down".
  const THUMB_ICON =
    "M1 21h4V9H1v12zm22-11c0-1.1-.9-2-2-2h-6.31l.95-4.57.03-.32c0-.41-.17-.79-.44-1.06L14.17 1 " +
    "7.59 7.59C7.22 7.95 7 8.45 7 9v10c0 1.1.9 2 2 2h9c.83 0 1.54-.5 1.84-1.22l3.02-7.05c.09-.23" +
    ".14-.47.14-.73v-2z";

  /** A decorative 24x24 icon of one path, in the text colour. */
  function icon(d) {
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    const path = document.createElementNS(ns, "path");
    path.setAttribute("fill", "currentColor");
    path.setAttribute("d", d);
    svg.append(path);
    return svg;
  }

  /** What to tell a person about a failed call; the server's own message for 4xx. */
  function friendlyError(err) {
    if (err instanceof StreamError) {
      return err.message || "The answer could not be finished. Please try again.";
    }
    if (err.code === "interrupted") {
      return "The connection broke while the answer was being written. Please try again.";
    }
    if (err.status === 0) {
      return "Can't reach the chat service. Check your connection and try again.";
    }
    const wait = err.retryAfter ? ` in ${err.retryAfter} second${err.retryAfter === 1 ? "" : "s"}` : "";
    if (err.status === 409) return `Your previous message is still being answered. Please try again${wait || " shortly"}.`;
    if (err.status === 429) return `You're sending messages too quickly. Please try again${wait || " shortly"}.`;
    if (err.status === 503) return `The chat service is busy right now. Please try again${wait || " shortly"}.`;
    if (err.status >= 500) return "Something went wrong on our side. Please try again.";
    return err.message || `The request failed (HTTP ${err.status}).`;
  }

  function formatTime(iso) {
    const date = iso ? new Date(iso) : new Date();
    if (Number.isNaN(date.getTime())) return "";
    return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  /** One chat UI (page or floating panel) bound to one session. */
  class ChatWidget {
    constructor(root, { closable = false } = {}) {
      this.api = new ChatApi(API_BASE);
      this.sessionId = null;
      this.nextCursor = null;
      this.busy = false;
      this.retry = null;
      this.started = null;
      // The question last sent without an answer and its Idempotency-Key, for retries.
      this.unanswered = null;
      // The turn whose answer is being written, and the last history page's messages.
      this.current = null;
      this.latest = [];
      this.pinnedUntil = 0;
      const uid = `cs-${++instances}`;

      this.title = el("h2", { cls: "cs-title", text: TITLE, attrs: { id: `${uid}-title` } });
      this.newButton = el("button", {
        cls: "cs-header-button cs-new",
        text: "New chat",
        attrs: { type: "button" },
      });
      const header = el("div", { cls: "cs-header" }, [this.title, this.newButton]);
      if (closable) {
        this.closeButton = el("button", {
          cls: "cs-header-button cs-close",
          text: "\u00d7",
          attrs: { type: "button", "aria-label": "Close chat" },
        });
        header.append(this.closeButton);
      }

      this.earlier = el("button", {
        cls: "cs-earlier",
        text: "Show earlier messages",
        attrs: { type: "button", hidden: "" },
      });
      this.empty = el("p", { cls: "cs-empty", text: "Ask a question to start the conversation." });
      this.list = el("ol", { cls: "cs-messages" });
      // The live region: screen readers announce each new message as it is added.
      const feed = el(
        "div",
        {
          cls: "cs-feed",
          attrs: {
            role: "log",
            "aria-live": "polite",
            "aria-relevant": "additions",
            "aria-label": "Conversation",
          },
        },
        [this.list],
      );
      // Focusable so keyboard users can scroll the conversation.
      this.log = el(
        "div",
        { cls: "cs-log", attrs: { role: "region", tabindex: "0", "aria-label": "Messages" } },
        [this.earlier, this.empty, feed],
      );

      this.typing = el("div", { cls: "cs-typing", attrs: { role: "status", hidden: "" } }, [
        el("span", { cls: "cs-dots", attrs: { "aria-hidden": "true" } }, [
          el("span"),
          el("span"),
          el("span"),
        ]),
        el("span", { text: "Assistant is typing\u2026" }),
      ]);

      this.errorText = el("p", { cls: "cs-error-text" });
      this.retryButton = el("button", {
        cls: "cs-retry",
        text: "Try again",
        attrs: { type: "button" },
      });
      this.error = el("div", { cls: "cs-error", attrs: { role: "alert", hidden: "" } }, [
        this.errorText,
        this.retryButton,
      ]);

      this.input = el("textarea", {
        cls: "cs-input",
        attrs: {
          id: `${uid}-input`,
          rows: "1",
          placeholder: "Type your question\u2026",
          autocomplete: "off",
          "aria-describedby": `${uid}-hint`,
        },
      });
      this.sendButton = el("button", { cls: "cs-send", text: "Send", attrs: { type: "submit" } });
      // Takes Send's place while an answer is being written.
      this.stopButton = el("button", {
        cls: "cs-stop",
        text: "Stop",
        attrs: { type: "button", "aria-label": "Stop the answer", hidden: "" },
      });
      this.form = el("form", { cls: "cs-form", attrs: { "aria-label": "Send a message" } }, [
        el("label", { cls: "cs-sr", text: "Your question", attrs: { for: `${uid}-input` } }),
        this.input,
        el("span", {
          cls: "cs-sr",
          text: "Enter sends; Shift+Enter starts a new line.",
          attrs: { id: `${uid}-hint` },
        }),
        this.sendButton,
        this.stopButton,
      ]);

      this.element = el(
        "section",
        { cls: "cs-chat", attrs: { "aria-labelledby": `${uid}-title` } },
        [header, this.log, this.typing, this.error, this.form],
      );
      root.append(this.element);

      this.form.addEventListener("submit", (event) => {
        event.preventDefault();
        this.submit();
      });
      this.input.addEventListener("keydown", (event) => {
        if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
          event.preventDefault();
          this.submit();
        }
      });
      this.input.addEventListener("input", () => this.updateControls());
      this.newButton.addEventListener("click", () => this.newChat());
      this.stopButton.addEventListener("click", () => this.stop());
      this.earlier.addEventListener("click", () => this.loadEarlier());
      this.retryButton.addEventListener("click", () => {
        const action = this.retry;
        this.clearError();
        if (action) action();
      });
      this.updateControls();
    }

    /** Connect once: restore the stored session, or start a new one. */
    start() {
      if (this.current) return Promise.resolve(); // an answer is being shown: leave it be
      if (!this.started) {
        this.started = this.restore().finally(() => {
          this.started = null;
        });
      }
      return this.started;
    }

    async restore() {
      this.setBusy(true);
      let pending = null;
      try {
        const stored = sessionStore.get();
        // An expired or deleted session is replaced silently by a new one.
        if (!(stored && (await this.resume(stored)))) await this.startSession();
        this.element.dataset.ready = "true";
        pending = pendingReply.get();
        if (pending && pending.sessionId !== this.sessionId) {
          pending = null; // its session is gone, and the reply with it
          pendingReply.set(null);
        }
      } catch (err) {
        this.showError(friendlyError(err), () => this.start());
      } finally {
        this.setBusy(false);
      }
      if (pending) await this.resumeReply(pending);
    }

    /** Show a stored session's history; false when the server no longer has it. */
    async resume(id) {
      const { valid } = await this.api.validate(id);
      if (!valid) return false;
      let page;
      try {
        page = await this.api.history(id);
      } catch (err) {
        if (err.status === 404) return false; // expired between the two calls
        throw err;
      }
      this.sessionId = id;
      this.renderHistory(page, false);
      return true;
    }

    async startSession() {
      const created = await this.api.create();
      this.sessionId = created.sessionId;
      sessionStore.set(this.sessionId);
      this.clearMessages();
    }

    /** Follow the session the server answered in (a new one when the old had expired). */
    adopt(sessionId) {
      if (sessionId && sessionId !== this.sessionId) {
        this.sessionId = sessionId;
        sessionStore.set(sessionId);
      }
    }

    async newChat() {
      if (this.busy) return;
      this.clearError();
      this.setBusy(true);
      try {
        const old = this.sessionId;
        if (old) {
          try {
            await this.api.remove(old);
          } catch (err) {
            if (err.status !== 404) throw err; // already gone is what we wanted
          }
        }
        this.sessionId = null;
        sessionStore.set(null);
        pendingReply.set(null);
        this.unanswered = null; // a question asked again in the new chat is a new turn
        await this.startSession();
        this.element.dataset.ready = "true";
        this.input.focus();
      } catch (err) {
        this.showError(friendlyError(err), () => this.newChat());
      } finally {
        this.setBusy(false);
      }
    }

    async submit() {
      const question = this.input.value.trim();
      if (!question || this.busy) return;
      this.clearError();
      this.input.value = "";
      // The same text again after a failure is a retry: same key. Edited text is a new turn.
      if (!this.unanswered || this.unanswered.question !== question) {
        this.unanswered = { question, key: newIdempotencyKey() };
      }
      const { key } = this.unanswered;
      const turn = new Turn(this, question);
      await this.answer(turn, (onEvent) => this.api.send(this.sessionId, question, key, onEvent));
    }

    /**
     * A page loaded while a reply was being written: follow it from its first event (this
     * page never saw its text) and show it once. History holds a turn only once its answer
     * is complete, so if history ends with this question the reply has finished: it is
     * followed unseen and history read again (which also settles the case of the same
     * question and answer twice in a row).
     */
    resumeReply({ sessionId, replyId, question }) {
      const shown = !this.endsWithAnswerTo(String(question || ""));
      const turn = new Turn(this, String(question || ""), { sessionId, replyId, shown });
      return this.answer(turn, this.rest(turn));
    }

    /** Show `turn`'s answer as it is written, to its end or to a failure. */
    async answer(turn, request) {
      this.current = turn;
      this.setBusy(true, turn.shown && !turn.answer.item);
      try {
        const done = await this.follow(turn, request);
        this.unanswered = null;
        this.adopt(done.sessionId);
        pendingReply.set(null);
        if (turn.shown) {
          turn.answer.finish(done, done.stopped === true);
          this.makeRateable(turn.answer, done.messageId); // not awaited: Send is free again
        } else {
          await this.refreshHistory();
        }
      } catch (err) {
        await this.failed(turn, err);
      } finally {
        this.current = null;
        this.setBusy(false);
      }
    }

    /**
     * Follow `turn`'s reply to its end, starting with `request(onEvent)`. When the
     * connection breaks after `start`, the server goes on writing: pick its events up again
     * after the last one seen, a few times, backing off.
     */
    async follow(turn, request) {
      const onEvent = (name, data, id) => this.onEvent(turn, name, data, id);
      for (let tries = 1; ; tries++) {
        try {
          return await request(onEvent);
        } catch (err) {
          const broken = err.status === 0 || err.status === 503 || err.code === "store_unavailable";
          if (!(turn.replyId && broken) || tries > RESUME_ATTEMPTS) throw err;
          await new Promise((resolve) => setTimeout(resolve, RESUME_DELAY_MS * tries));
          request = this.rest(turn);
        }
      }
    }

    /** The request for the rest of `turn`'s reply: its events after the last one seen. */
    rest(turn) {
      return (onEvent) => {
        turn.after = turn.lastId;
        return this.api.events(turn.sessionId, turn.replyId, turn.after, onEvent);
      };
    }

    onEvent(turn, name, data, id) {
      const number = /^\d+$/.test(id) ? Number(id) : 0;
      if (number && number <= turn.after) return; // seen before this resume
      if (number > turn.lastId) turn.lastId = number;
      if (name === "start") {
        this.adopt(data.sessionId);
        turn.sessionId = this.sessionId;
        // A replayed answer (a retry of one already given) has no reply id: nothing to keep.
        if (data.replyId && !turn.replyId) {
          turn.replyId = String(data.replyId);
          pendingReply.set({
            sessionId: turn.sessionId,
            replyId: turn.replyId,
            question: turn.question,
          });
        }
        this.updateControls();
      } else if (name === "delta" && typeof data.text === "string" && turn.shown) {
        turn.answer.append(data.text);
      }
    }

    async failed(turn, err) {
      if (turn.replyId && err.status === 404) {
        // The reply is unknown or too old to follow: history has whatever was stored.
        pendingReply.set(null);
        turn.remove();
        await this.refreshHistory();
        return;
      }
      if (turn.replyId && !(err instanceof StreamError)) {
        // Cut off while being written (the server goes on): keep what is shown; "Try again"
        // picks the answer up where it broke, and so does a reload.
        this.showError(friendlyError(err), () => this.answer(turn, this.rest(turn)));
        return;
      }
      // Nothing was stored: take the question back to the input, to retry or edit it.
      if (turn.replyId) pendingReply.set(null);
      turn.remove();
      this.updateEmpty();
      const typed = this.input.value;
      this.input.value = typed ? `${turn.question}\n${typed}` : turn.question;
      this.showError(friendlyError(err), () => this.submit());
    }

    /** Ask the server to stop the answer being written; its end (stopped) comes by stream. */
    async stop() {
      const turn = this.current;
      if (!turn || !turn.replyId || turn.stopping) return;
      turn.stopping = true;
      this.updateControls();
      try {
        await this.api.stop(turn.sessionId, turn.replyId);
      } catch {
        turn.stopping = false; // the answer goes on; Stop can be pressed again
        this.updateControls();
      }
    }

    async loadEarlier() {
      if (this.busy || this.nextCursor === null || !this.sessionId) return;
      this.setBusy(true);
      try {
        const page = await this.api.history(this.sessionId, this.nextCursor);
        this.renderHistory(page, true);
      } catch (err) {
        this.showError(friendlyError(err), () => this.loadEarlier());
      } finally {
        this.setBusy(false);
      }
    }

    /** Show the latest history page again; on failure what is shown stays. */
    async refreshHistory() {
      try {
        this.renderHistory(await this.api.history(this.sessionId), false);
      } catch {
        /* the next load shows it */
      }
    }

    renderHistory(page, prepend) {
      const messages = page.messages || [];
      const items = messages.map((message) => this.messageItem(message));
      if (prepend) {
        const height = this.log.scrollHeight;
        this.list.prepend(...items);
        this.log.scrollTop += this.log.scrollHeight - height; // keep the reader's place
      } else {
        this.latest = messages;
        this.list.replaceChildren(...items);
        this.scrollToEnd();
      }
      this.nextCursor = page.nextCursor ?? null;
      this.earlier.hidden = this.nextCursor === null;
      this.updateEmpty();
    }

    /**
     * Give a just-finished answer its thumbs. The send's answer (or its `done` event) names
     * the answer's id in history as `messageId`; when it does not (null: unknown, or absent:
     * an older server), the id is read from history, whose last message is that answer (a
     * turn is stored whole); a different last message (another tab answered since) leaves
     * it unrated until a reload.
     */
    async makeRateable(answer, messageId) {
      const { item, text } = answer;
      const sessionId = this.sessionId;
      let rated = { id: messageId };
      if (!Number.isInteger(messageId)) {
        try {
          const page = await this.api.history(sessionId, undefined, 2);
          rated = (page.messages || []).slice(-1)[0];
        } catch {
          return; // the next load shows its thumbs
        }
        const same =
          rated && rated.type === "assistant" && String(rated.content ?? "").trim() === text.trim();
        if (!same) return;
      }
      if (!item || !item.isConnected || sessionId !== this.sessionId) return;
      const follow = this.atEnd();
      this.addFeedback(item, sessionId, rated);
      if (follow) this.scrollToEnd(true);
    }

    /** Thumbs under the answer `item`, when the server gave it an id to rate it by. */
    addFeedback(item, sessionId, { id, feedback }) {
      if (!Number.isInteger(id) || item.querySelector(".cs-feedback")) return;
      item.append(new RatingBar(this.api, sessionId, id, feedback).element);
    }

    /** Whether the history shown ends with `question` and an answer to it. */
    endsWithAnswerTo(question) {
      const [asked, answered] = this.latest.slice(-2);
      return Boolean(
        asked &&
          answered &&
          asked.type === "user" &&
          answered.type === "assistant" &&
          String(asked.content).trim() === question.trim(),
      );
    }

    clearMessages() {
      this.latest = [];
      this.list.replaceChildren();
      this.nextCursor = null;
      this.earlier.hidden = true;
      this.updateEmpty();
    }

    appendMessage(message) {
      const item = this.messageItem(message);
      this.list.append(item);
      this.updateEmpty();
      this.scrollToEnd();
      return item;
    }

    /** An empty message item and its bubble. */
    messageShell(role) {
      const bubble = el("div", { cls: "cs-bubble" });
      const item = el("li", { cls: `cs-msg cs-msg--${role}` }, [
        el("span", { cls: "cs-sr", text: role === "user" ? "You said:" : "Assistant:" }),
        bubble,
      ]);
      return { item, bubble };
    }

    /** One message as a list item: a question as plain text, an answer as safe Markdown. */
    messageItem(message) {
      const { type, content, timestamp, sources, degraded, stopped } = message;
      const role = type === "user" ? "user" : "assistant";
      const { item, bubble } = this.messageShell(role);
      const text = String(content ?? "");
      if (role === "user") bubble.textContent = text;
      else bubble.append(renderMarkdown(text));
      this.addDetails(item, { timestamp, sources, degraded, stopped });
      if (role === "assistant") this.addFeedback(item, this.sessionId, message);
      return item;
    }

    /** What goes under a message's bubble: notes, sources, time (now, when not given). */
    addDetails(item, { timestamp, sources, degraded, stopped }) {
      if (stopped) {
        item.append(el("div", { cls: "cs-note cs-note--stopped", text: "Stopped" }));
      }
      if (degraded) {
        item.append(
          el("div", {
            cls: "cs-note",
            text: "The language model was unavailable: this answer quotes the documentation.",
          }),
        );
      }
      if (Array.isArray(sources) && sources.length) item.append(this.sourcesBlock(sources));
      const time = formatTime(timestamp);
      if (time) {
        item.append(
          el("time", {
            cls: "cs-meta",
            text: time,
            attrs: { datetime: timestamp || new Date().toISOString() },
          }),
        );
      }
    }

    sourcesBlock(sources) {
      const list = el("ol");
      for (const source of sources) {
        const title = String(source.title || source.source || "Source");
        const where = String(source.source || "");
        const entry = el("li", { cls: "cs-source" });
        const href = safeLink(where);
        if (href) {
          entry.append(
            el("a", {
              text: title,
              attrs: { href, target: "_blank", rel: "noopener noreferrer" },
            }),
          );
        } else {
          entry.append(el("span", { cls: "cs-source-title", text: title }));
          if (where && where !== title) {
            entry.append(el("span", { cls: "cs-source-path", text: where }));
          }
        }
        list.append(entry);
      }
      return el("div", { cls: "cs-sources" }, [
        el("span", { cls: "cs-sources-label", text: "Sources" }),
        list,
      ]);
    }

    updateEmpty() {
      this.empty.hidden = this.list.childElementCount > 0;
    }

    /** Whether the reader is at the end of the log (or we are taking them there). */
    atEnd() {
      const { scrollHeight, scrollTop, clientHeight } = this.log;
      return scrollHeight - scrollTop - clientHeight < 48 || performance.now() < this.pinnedUntil;
    }

    /** Scroll to the newest message: smoothly for a new message, at once as text grows. */
    scrollToEnd(instant = false) {
      // A smooth scroll takes a moment; until it ends the reader counts as at the end.
      this.pinnedUntil = performance.now() + (instant ? 0 : 800);
      if (instant) this.log.scrollTo({ top: this.log.scrollHeight, behavior: "instant" });
      else this.log.scrollTop = this.log.scrollHeight;
    }

    setBusy(busy, typing = false) {
      this.busy = busy;
      this.typing.hidden = !typing;
      this.element.setAttribute("aria-busy", String(busy));
      this.updateControls();
      if (typing) this.scrollToEnd();
    }

    updateControls() {
      const turn = this.current;
      const writing = Boolean(turn && turn.replyId);
      const stopHadFocus = this.element.getRootNode().activeElement === this.stopButton;
      this.sendButton.hidden = writing;
      this.stopButton.hidden = !writing;
      this.stopButton.setAttribute("aria-disabled", String(Boolean(writing && turn.stopping)));
      this.sendButton.disabled = this.busy || !this.input.value.trim();
      this.newButton.disabled = this.busy;
      if (stopHadFocus && !writing) this.input.focus(); // not lost to the page with the button
    }

    showError(text, retry) {
      this.retry = retry;
      this.errorText.textContent = text;
      this.error.hidden = false;
      this.element.dataset.state = "error";
    }

    clearError() {
      this.retry = null;
      this.error.hidden = true;
      this.errorText.textContent = "";
      delete this.element.dataset.state;
    }
  }

  /**
   * Thumbs up / down under one answer: toggle buttons whose aria-pressed is the rating the
   * server has stored. A click saves the other rating (the pressed one stays as it is: a
   * rating can be replaced, not taken back); only the server's answer changes what is
   * pressed, so a failure leaves it as it was and says so in a small notice.
   */
  class RatingBar {
    constructor(api, sessionId, messageId, feedback) {
      this.api = api;
      this.sessionId = sessionId;
      this.messageId = messageId;
      this.rating = feedback && Object.hasOwn(RATINGS, feedback.rating) ? feedback.rating : null;
      this.saving = false;
      this.timer = 0;
      this.buttons = Object.entries(RATINGS).map(([rating, label]) => {
        const button = el(
          "button",
          {
            cls: `cs-thumb cs-thumb--${rating}`,
            attrs: { type: "button", "aria-label": label, "data-rating": rating },
          },
          [icon(THUMB_ICON)],
        );
        button.addEventListener("click", () => this.choose(rating));
        return button;
      });
      // Always there (empty), so screen readers announce a failure as it is written in.
      this.notice = el("span", { cls: "cs-feedback-notice", attrs: { role: "status" } });
      this.element = el(
        "div",
        { cls: "cs-feedback", attrs: { role: "group", "aria-label": "Rate this answer" } },
        [...this.buttons, this.notice],
      );
      this.show();
    }

    show() {
      for (const button of this.buttons) {
        button.setAttribute("aria-pressed", String(button.dataset.rating === this.rating));
      }
    }

    async choose(rating) {
      if (this.saving || rating === this.rating) return;
      this.saving = true;
      this.element.setAttribute("aria-busy", "true");
      this.say("");
      try {
        const saved = await this.api.rate(this.sessionId, this.messageId, rating);
        this.rating = Object.hasOwn(RATINGS, saved.rating) ? saved.rating : rating;
      } catch (err) {
        const wait = err.retryAfter ? ` in ${err.retryAfter} s` : " in a moment";
        this.say(
          err.status === 429
            ? `Too many ratings for now. Please try again${wait}.`
            : "Couldn't save your rating. Please try again.",
        );
      } finally {
        this.saving = false;
        this.element.removeAttribute("aria-busy");
        this.show();
      }
    }

    say(text) {
      clearTimeout(this.timer);
      this.notice.textContent = text;
      if (text) this.timer = setTimeout(() => this.say(""), RATING_NOTICE_MS);
    }
  }

  /** A question being answered: its question bubble, its answer, where its reply's stream is. */
  class Turn {
    constructor(widget, question, options = {}) {
      const { sessionId = widget.sessionId, replyId = "", shown = true } = options;
      this.question = question;
      this.sessionId = sessionId;
      this.replyId = replyId;
      this.lastId = 0; // the number of the last event seen, to resume after
      this.after = 0; // the current request's events start after this number
      this.stopping = false;
      // False when history already shows this turn: follow the reply without drawing it.
      this.shown = shown;
      this.questionItem = shown ? widget.appendMessage({ type: "user", content: question }) : null;
      this.answer = new AnswerView(widget);
    }

    remove() {
      this.answer.remove();
      if (this.questionItem) this.questionItem.remove();
      this.questionItem = null;
    }
  }

  /**
   * One answer as it is written: text is appended as it arrives and its Markdown rendered
   * at most once per animation frame; its message item appears with the first text.
   */
  class AnswerView {
    constructor(widget) {
      this.widget = widget;
      this.text = "";
      this.item = null;
      this.bubble = null;
      this.frame = 0;
    }

    append(text) {
      this.text += text;
      this.show();
      if (!this.frame) {
        this.frame = requestAnimationFrame(() => {
          this.frame = 0;
          this.render();
        });
      }
    }

    show() {
      if (this.item) return;
      const { item, bubble } = this.widget.messageShell("assistant");
      item.setAttribute("aria-busy", "true"); // for screen readers: complete once written
      this.item = item;
      this.bubble = bubble;
      this.widget.typing.hidden = true;
      this.widget.list.append(item);
      this.widget.updateEmpty();
    }

    render() {
      const follow = this.widget.atEnd();
      this.bubble.replaceChildren(renderMarkdown(this.text));
      if (follow) this.widget.scrollToEnd(true);
    }

    /** The whole answer (a `done` event's, or a JSON answer), with its details. */
    finish(answer, stopped) {
      cancelAnimationFrame(this.frame);
      this.frame = 0;
      this.text = String(answer.reply ?? this.text);
      this.show();
      this.render();
      this.item.removeAttribute("aria-busy");
      this.widget.addDetails(this.item, { ...answer, timestamp: undefined, stopped });
      this.widget.scrollToEnd();
    }

    remove() {
      cancelAnimationFrame(this.frame);
      this.frame = 0;
      if (this.item) this.item.remove();
      this.item = null;
      this.text = "";
    }
  }

  /** Only http(s) URLs become links; anything else (javascript:, data:, paths) stays text. */
  function safeLink(value) {
    try {
      const url = new URL(value);
      return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
    } catch {
      return null;
    }
  }

  /*
   * Markdown for answers, built as DOM nodes: text only ever goes in as text nodes, so no
   * markup in an answer can become an element. A deliberately small subset: paragraphs,
   * # to ### headings, - * + and 1. lists, ``` or ~~~ fenced code, `code`, *em*, **strong**
   * and [links](https://...) to http(s) URLs. Anything else stays literal text. An
   * unclosed fence or span renders sensibly while the answer is still being written.
   */
  const FENCE = /^ {0,3}(`{3,}|~{3,})([^`]*)$/;
  const HEADING = /^ {0,3}(#{1,3})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$/;
  const ITEM = /^[ \t]{0,3}(?:([-*+])|(\d{1,9})[.)])[ \t]+(.*)$/;
  const ESCAPABLE = /[\\`*_{}[\]()#+\-.!~<>|]/;

  /** The blocks of `text`: {type: "p"|"h"|"code"|"list", ...}. */
  function markdownBlocks(text) {
    const lines = String(text).split(/\r\n|\r|\n/);
    const blocks = [];
    let paragraph = null;
    let list = null; // the open list; `gap` after a blank line inside it
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i];
      const fence = FENCE.exec(line);
      const heading = !fence && HEADING.exec(line);
      const item = !fence && !heading && ITEM.exec(line);
      if (!line.trim()) {
        paragraph = null;
        if (list) list.gap = true;
        continue;
      }
      if (list && !item && !fence && !heading && (!list.gap || /^[ \t]{2,}/.test(line))) {
        const lastItem = list.items[list.items.length - 1];
        lastItem.push(list.gap ? `\n${line.trim()}` : line.trim()); // more of the last item
        list.gap = false;
        continue;
      }
      if (!item) list = null;
      if (fence) {
        paragraph = null;
        const mark = fence[1];
        const body = [];
        for (i++; i < lines.length; i++) {
          // Closed by a line of at least as many of the same character.
          const closing = lines[i].trim();
          if (closing.startsWith(mark) && new Set(closing).size === 1) break;
          body.push(lines[i]);
        }
        // Not closed (yet, while it is written): the text's final newline is not code.
        if (i >= lines.length && body[body.length - 1] === "") body.pop();
        blocks.push({ type: "code", text: body.join("\n") });
      } else if (heading) {
        paragraph = null;
        blocks.push({ type: "h", level: heading[1].length, text: heading[2] });
      } else if (item) {
        paragraph = null;
        const ordered = item[2] !== undefined;
        // Another bullet character, or numbers after bullets, start another list.
        if (!list || list.ordered !== ordered || (!ordered && list.bullet !== item[1])) {
          const first = ordered ? Number(item[2]) : 1;
          list = { type: "list", ordered, bullet: item[1], start: first, items: [] };
          blocks.push(list);
        }
        list.gap = false;
        list.items.push([item[3]]);
      } else if (paragraph) {
        paragraph.lines.push(line.trim());
      } else {
        paragraph = { type: "p", lines: [line.trim()] };
        blocks.push(paragraph);
      }
    }
    return blocks;
  }

  /** `text` as safe Markdown, in a fragment ready to put in a bubble. */
  function renderMarkdown(text) {
    const fragment = document.createDocumentFragment();
    for (const block of markdownBlocks(text)) {
      if (block.type === "code") {
        fragment.append(el("pre", {}, [el("code", { text: block.text })]));
      } else if (block.type === "h") {
        // The widget's own title is an h2, so an answer's headings start one level below.
        fragment.append(el(`h${block.level + 2}`, {}, inlineMarkdown(block.text)));
      } else if (block.type === "list") {
        const attrs = block.ordered && block.start !== 1 ? { start: String(block.start) } : {};
        const items = block.items.map((lines) => el("li", {}, inlineMarkdown(lines.join("\n"))));
        fragment.append(el(block.ordered ? "ol" : "ul", { attrs }, items));
      } else {
        fragment.append(el("p", {}, inlineMarkdown(block.lines.join("\n"))));
      }
    }
    return fragment;
  }

  /** The inline spans of `text` as nodes (strings become text nodes when appended). */
  function inlineMarkdown(text, links = true) {
    const out = [];
    let plain = "";
    const push = (node) => {
      if (plain) out.push(plain);
      plain = "";
      out.push(node);
    };
    let i = 0;
    while (i < text.length) {
      const ch = text[i];
      if (ch === "\\" && ESCAPABLE.test(text[i + 1] || "")) {
        plain += text[i + 1];
        i += 2;
      } else if (ch === "`") {
        const run = /^`+/.exec(text.slice(i))[0];
        const close = closingRun(text, i + run.length, run);
        if (close < 0) {
          plain += run;
          i += run.length;
          continue;
        }
        let code = text.slice(i + run.length, close);
        if (code.length > 2 && code.startsWith(" ") && code.endsWith(" ")) code = code.slice(1, -1);
        push(el("code", { text: code }));
        i = close + run.length;
      } else if (ch === "*") {
        const mark = text.startsWith("**", i) ? "**" : "*";
        const close = closingMark(text, i + mark.length, mark);
        if (close < 0) {
          plain += mark;
          i += mark.length;
          continue;
        }
        const inner = inlineMarkdown(text.slice(i + mark.length, close), links);
        push(el(mark === "**" ? "strong" : "em", {}, inner));
        i = close + mark.length;
      } else if (ch === "[" && links) {
        const link = markdownLink(text, i);
        if (!link) {
          plain += ch;
          i += 1;
          continue;
        }
        const attrs = { href: link.href, target: "_blank", rel: "noopener noreferrer nofollow" };
        push(el("a", { attrs }, inlineMarkdown(link.label || link.href, false)));
        i = link.end;
      } else {
        plain += ch;
        i += 1;
      }
    }
    if (plain) out.push(plain);
    return out;
  }

  /** Where a code span opened by `run` closes: the next run of exactly as many backticks. */
  function closingRun(text, from, run) {
    for (let j = text.indexOf(run, from); j >= 0; j = text.indexOf(run, j + 1)) {
      let end = j + run.length;
      if (text[end] !== "`") return j;
      while (text[end] === "`") end++; // a longer run: skip all of it
      j = end - 1;
    }
    return -1;
  }

  /** Where *em* or **strong** opened at `from` closes; -1 when it does not (stays text). */
  function closingMark(text, from, mark) {
    if (from >= text.length || /\s/.test(text[from])) return -1; // "2 * 3" is not emphasis
    for (let j = text.indexOf(mark, from + 1); j >= 0; j = text.indexOf(mark, j + 1)) {
      if (/\s/.test(text[j - 1])) continue;
      if (mark === "*" && (text[j + 1] === "*" || text[j - 1] === "*")) continue; // part of **
      return j;
    }
    return -1;
  }

  /** A [label](url) link at `start` when url is http(s): {label, href, end}; else null. */
  function markdownLink(text, start) {
    let depth = 0;
    let end = start;
    for (; end < text.length; end++) {
      if (text[end] === "\\") end++;
      else if (text[end] === "[") depth++;
      else if (text[end] === "]" && --depth === 0) break;
    }
    if (end >= text.length || text[end + 1] !== "(") return null;
    let close = end + 2;
    for (let parens = 1; close < text.length; close++) {
      if (/\s/.test(text[close])) return null;
      if (text[close] === "(") parens++;
      else if (text[close] === ")" && --parens === 0) break;
    }
    if (close >= text.length) return null;
    const href = safeLink(text.slice(end + 2, close));
    return href ? { label: text.slice(start + 1, end), href, end: close + 1 } : null;
  }

  /** A shadow root holding our stylesheet, so host-page CSS and ours never mix. */
  function shadowHost(parent, className) {
    const host = el("div", { cls: className, attrs: { "data-chatbot-sessions": "" } });
    parent.append(host);
    const shadow = host.attachShadow({ mode: "open" });
    shadow.append(el("link", { attrs: { rel: "stylesheet", href: CSS_URL } }));
    return { host, shadow };
  }

  function mountPage(target) {
    const { shadow } = shadowHost(target, "chatbot-sessions-page");
    const page = el("div", { cls: "cs-page" });
    shadow.append(page);
    const widget = new ChatWidget(page);
    widget.start();
    widget.input.focus();
  }

  function mountFloating() {
    const { shadow } = shadowHost(document.body, "chatbot-sessions-embed");
    const uid = "cs-panel";
    const launcher = el("button", {
      cls: "cs-launcher",
      attrs: {
        type: "button",
        "aria-label": `Open ${TITLE}`,
        "aria-expanded": "false",
        "aria-controls": uid,
      },
    }, [icon(CHAT_ICON)]);
    const panel = el("div", {
      cls: "cs-panel",
      attrs: { id: uid, role: "dialog", "aria-label": TITLE, hidden: "" },
    });
    shadow.append(launcher, panel);
    const widget = new ChatWidget(panel, { closable: true });

    const setOpen = (open) => {
      panel.hidden = !open;
      launcher.setAttribute("aria-expanded", String(open));
      launcher.setAttribute("aria-label", `${open ? "Close" : "Open"} ${TITLE}`);
      if (open) {
        widget.start(); // connect on first open: no session for visitors who never chat
        widget.input.focus();
      } else {
        launcher.focus();
      }
    };
    launcher.addEventListener("click", () => setOpen(panel.hidden));
    widget.closeButton.addEventListener("click", () => setOpen(false));
    panel.addEventListener("keydown", (event) => {
      if (event.key === "Escape") setOpen(false);
    });
  }

  function boot() {
    if (MOUNT) {
      const target = document.querySelector(MOUNT);
      if (target) {
        mountPage(target);
        return;
      }
      console.warn(`chatbot-sessions: no element matches data-mount="${MOUNT}"`);
      return;
    }
    mountFloating();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", boot, { once: true });
  } else {
    boot();
  }
})();
