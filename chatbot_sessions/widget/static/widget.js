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
 * Every message is rendered with textContent, never as HTML. There is no inline script or
 * style anywhere, so pages with a strict Content-Security-Policy can use it.
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
  const REQUEST_TIMEOUT_MS = 60000;
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

  /** The service's HTTP API, as the widget uses it. */
  class ChatApi {
    constructor(base) {
      this.base = base;
    }

    async call(method, path, { body, sessionId, idempotencyKey } = {}) {
      const headers = { Accept: "application/json" };
      if (body !== undefined) headers["Content-Type"] = "application/json";
      if (sessionId) headers["session-id"] = sessionId;
      if (idempotencyKey) headers["Idempotency-Key"] = idempotencyKey;
      const controller = new AbortController();
      const timer = setTimeout(() => controller.abort(), REQUEST_TIMEOUT_MS);
      let response;
      try {
        response = await fetch(this.base + path, {
          method,
          headers,
          body: body === undefined ? undefined : JSON.stringify(body),
          credentials: "omit",
          cache: "no-store",
          signal: controller.signal,
        });
      } catch (err) {
        // A refused CORS grant, a dropped connection and a timeout all land here.
        throw new ApiError(0, "network", String(err && err.message));
      } finally {
        clearTimeout(timer);
      }
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

    create() {
      return this.call("POST", "/api/session/create");
    }

    validate(id) {
      return this.call("GET", `/api/session/${encodeURIComponent(id)}/validate`);
    }

    history(id, before) {
      const query = new URLSearchParams({ limit: String(HISTORY_PAGE) });
      if (before !== undefined && before !== null) query.set("before", String(before));
      return this.call("GET", `/api/session/${encodeURIComponent(id)}/history?${query}`);
    }

    remove(id) {
      return this.call("DELETE", `/api/session/${encodeURIComponent(id)}`);
    }

    /** Ask a question; retries of one question must reuse its key (see newIdempotencyKey). */
    send(id, question, idempotencyKey) {
      return this.call("POST", "/api/send-message", {
        body: { question },
        sessionId: id,
        idempotencyKey,
      });
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

  /** The session id, kept in localStorage (in memory where storage is blocked). */
  const sessionStore = {
    memory: null,
    get() {
      try {
        return window.localStorage.getItem(STORAGE_KEY) || this.memory;
      } catch {
        return this.memory;
      }
    },
    set(id) {
      this.memory = id;
      try {
        if (id) window.localStorage.setItem(STORAGE_KEY, id);
        else window.localStorage.removeItem(STORAGE_KEY);
      } catch {
        /* storage blocked (private mode, sandboxed frame): memory still holds it */
      }
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

  function chatIcon() {
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    const path = document.createElementNS(ns, "path");
    path.setAttribute("fill", "currentColor");
    path.setAttribute(
      "d",
      "M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4H4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z",
    );
    svg.append(path);
    return svg;
  }

  /** What to tell a person about a failed call; the server's own message for 4xx. */
  function friendlyError(err) {
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
      this.form = el("form", { cls: "cs-form", attrs: { "aria-label": "Send a message" } }, [
        el("label", { cls: "cs-sr", text: "Your question", attrs: { for: `${uid}-input` } }),
        this.input,
        el("span", {
          cls: "cs-sr",
          text: "Enter sends; Shift+Enter starts a new line.",
          attrs: { id: `${uid}-hint` },
        }),
        this.sendButton,
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
      if (!this.started) {
        this.started = this.restore().finally(() => {
          this.started = null;
        });
      }
      return this.started;
    }

    async restore() {
      this.setBusy(true);
      try {
        const stored = sessionStore.get();
        // An expired or deleted session is replaced silently by a new one.
        if (!(stored && (await this.resume(stored)))) await this.startSession();
        this.element.dataset.ready = "true";
      } catch (err) {
        this.showError(friendlyError(err), () => this.start());
      } finally {
        this.setBusy(false);
      }
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
      const bubble = this.appendMessage({ type: "user", content: question });
      this.setBusy(true, true);
      // The same text again after a failure is a retry: same key. Edited text is a new turn.
      if (!this.unanswered || this.unanswered.question !== question) {
        this.unanswered = { question, key: newIdempotencyKey() };
      }
      try {
        const answer = await this.api.send(this.sessionId, question, this.unanswered.key);
        this.unanswered = null;
        if (answer.sessionId && answer.sessionId !== this.sessionId) {
          // The old session had expired: the server started a new one for this turn.
          this.sessionId = answer.sessionId;
          sessionStore.set(this.sessionId);
        }
        this.appendMessage({
          type: "assistant",
          content: answer.reply,
          sources: answer.sources,
          degraded: answer.degraded,
        });
      } catch (err) {
        // Keep the question: take its bubble back and return the text to the input.
        bubble.remove();
        this.updateEmpty();
        const typed = this.input.value;
        this.input.value = typed ? `${question}\n${typed}` : question;
        this.showError(friendlyError(err), () => this.submit());
      } finally {
        this.setBusy(false);
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

    renderHistory(page, prepend) {
      const items = (page.messages || []).map((message) => this.messageItem(message));
      if (prepend) {
        const height = this.log.scrollHeight;
        this.list.prepend(...items);
        this.log.scrollTop += this.log.scrollHeight - height; // keep the reader's place
      } else {
        this.list.replaceChildren(...items);
        this.scrollToEnd();
      }
      this.nextCursor = page.nextCursor ?? null;
      this.earlier.hidden = this.nextCursor === null;
      this.updateEmpty();
    }

    clearMessages() {
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

    /** One message as a list item; all text via textContent. */
    messageItem({ type, content, timestamp, sources, degraded }) {
      const role = type === "user" ? "user" : "assistant";
      const item = el("li", { cls: `cs-msg cs-msg--${role}` }, [
        el("span", { cls: "cs-sr", text: role === "user" ? "You said:" : "Assistant:" }),
        el("div", { cls: "cs-bubble", text: String(content ?? "") }),
      ]);
      if (degraded) {
        item.append(
          el("div", {
            cls: "cs-note",
            text: "Answered without the knowledge base; it may be less accurate.",
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
      return item;
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

    scrollToEnd() {
      this.log.scrollTop = this.log.scrollHeight;
    }

    setBusy(busy, typing = false) {
      this.busy = busy;
      this.typing.hidden = !typing;
      this.element.setAttribute("aria-busy", String(busy));
      this.updateControls();
      if (typing) this.scrollToEnd();
    }

    updateControls() {
      this.sendButton.disabled = this.busy || !this.input.value.trim();
      this.newButton.disabled = this.busy;
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

  /** Only http(s) URLs become links; anything else (javascript:, data:, paths) stays text. */
  function safeLink(value) {
    try {
      const url = new URL(value);
      return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
    } catch {
      return null;
    }
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
    }, [chatIcon()]);
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
