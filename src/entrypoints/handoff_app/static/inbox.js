// The escalation inbox: open escalations, kept live over the stream (EventSource, same origin,
// signed in by the session cookie). User text is only ever set with textContent.
"use strict";

(function () {
  const boot = JSON.parse(document.getElementById("boot").textContent);
  const queue = document.getElementById("queue");
  const taken = document.getElementById("taken");
  const takenSection = document.getElementById("taken-section");
  const empty = document.getElementById("empty");
  const live = document.getElementById("live");
  const template = document.getElementById("card-template");
  let lastSeenSent = 0;
  let lastShown = 0;

  function nameOf(id) {
    return (id && boot.names[id]) || id || "someone";
  }

  function when(iso) {
    const at = new Date(iso);
    if (isNaN(at)) return "";
    return at.toISOString().slice(0, 16).replace("T", " ") + " UTC";
  }

  function setLive(state, words) {
    live.dataset.state = state;
    live.textContent = words;
  }

  function refreshEmpty() {
    empty.hidden = queue.querySelector(".card") !== null;
    takenSection.hidden = taken.querySelector(".card") === null;
  }

  function cardFor(id) {
    for (const card of queue.querySelectorAll(".card")) {
      if (card.dataset.handoffId === id) return card;
    }
    return null;
  }

  function say(card, words, kind) {
    const status = card.querySelector(".status");
    status.textContent = words;
    status.dataset.kind = kind || "";
  }

  function wire(card) {
    card.querySelector(".claim").addEventListener("click", () => claim(card));
    card.querySelector(".show-snapshot").addEventListener("click", () => snapshot(card));
    return card;
  }

  function build(data) {
    const card = template.content.firstElementChild.cloneNode(true);
    card.dataset.handoffId = data.handoff_id;
    card.querySelector(".summary").textContent = data.problem_summary || "(no summary)";
    card.querySelector(".who").textContent = nameOf(data.actor_id);
    const time = card.querySelector(".when");
    time.dateTime = data.at || "";
    time.textContent = when(data.at);
    card.querySelector(".notes").textContent = data.engineer_notes || "";
    return wire(card);
  }

  function add(data) {
    if (!data.handoff_id || cardFor(data.handoff_id)) return;
    const card = build(data);
    card.classList.add("arrived");
    queue.appendChild(card); // oldest first: a new one goes last
    refreshEmpty();
  }

  function retire(id, words) {
    const card = cardFor(id);
    if (!card) return;
    card.querySelector(".actions").remove();
    card.querySelector(".snapshot").hidden = true;
    card.classList.add("taken");
    say(card, words, "taken");
    taken.prepend(card);
    refreshEmpty();
  }

  async function call(method, path, body) {
    const headers = { "X-CSRF-Token": boot.csrf, Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    return fetch(boot.api + path, {
      method: method,
      headers: headers,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  }

  async function claim(card) {
    const id = card.dataset.handoffId;
    const button = card.querySelector(".claim");
    button.disabled = true;
    say(card, "Claiming…");
    let answer;
    try {
      answer = await call("POST", "/handoffs/" + encodeURIComponent(id) + "/claim");
    } catch (e) {
      button.disabled = false;
      say(card, "Could not reach the service; try again.", "error");
      return;
    }
    const body = await answer.json().catch(() => ({}));
    if (answer.ok) {
      retire(id, "You claimed it. The session is yours now.");
    } else if (body.error === "already_claimed") {
      retire(id, "Claimed by " + nameOf(body.claimed_by));
    } else {
      button.disabled = false;
      say(card, body.detail || "The claim was refused (" + answer.status + ").", "error");
    }
  }

  function showConversation(section, snap) {
    section.replaceChildren();
    const context = (snap && snap.context) || {};
    const messages = Array.isArray(context.messages) ? context.messages : [];
    if (messages.length) {
      const list = document.createElement("ol");
      list.className = "conversation";
      for (const m of messages) {
        const item = document.createElement("li");
        item.className = "message";
        const role = document.createElement("span");
        role.className = "role";
        role.textContent = String((m && m.role) || "");
        const content = document.createElement("span");
        content.className = "content";
        content.textContent = String((m && m.content) || "");
        item.append(role, content);
        list.appendChild(item);
      }
      section.appendChild(list);
    } else {
      const none = document.createElement("p");
      none.className = "empty";
      none.textContent = "No conversation was recorded.";
      section.appendChild(none);
    }
    const rest = Object.assign({}, context);
    delete rest.messages;
    if (Object.keys(rest).length) {
      const pre = document.createElement("pre");
      pre.textContent = JSON.stringify(rest, null, 2);
      section.appendChild(pre);
    }
  }

  async function snapshot(card) {
    const section = card.querySelector(".snapshot");
    const button = card.querySelector(".show-snapshot");
    if (!section.hidden) {
      section.hidden = true;
      button.setAttribute("aria-expanded", "false");
      return;
    }
    section.hidden = false;
    button.setAttribute("aria-expanded", "true");
    section.textContent = "Loading the snapshot…";
    try {
      const answer = await call("GET", "/handoffs/" + encodeURIComponent(card.dataset.handoffId));
      if (!answer.ok) throw new Error(String(answer.status));
      showConversation(section, (await answer.json()).snapshot);
    } catch (e) {
      section.textContent = "The snapshot could not be loaded.";
    }
  }

  async function closed(id) {
    // Taken while this page was not listening: say by whom, as the live event would have.
    let words = "No longer open.";
    try {
      const answer = await call("GET", "/handoffs/" + encodeURIComponent(id));
      if (answer.ok) {
        const h = await answer.json();
        if (h.status === "open") return; // raised after the queue was read: it stays
        if (h.status === "claimed") {
          words = h.claimed_by === boot.member_id ? "You claimed it." : "Claimed by " + nameOf(h.claimed_by);
        } else if (h.status === "withdrawn") {
          words = "Withdrawn by " + nameOf(h.created_by);
        }
      }
    } catch (e) {
      // the words above will do
    }
    retire(id, words);
  }

  async function reload() {
    // The whole open queue, anew: after (re)connecting and on stream.reset.
    let answer;
    try {
      answer = await call("GET", "/escalations?status=open");
    } catch (e) {
      return false;
    }
    if (!answer.ok) return false;
    const open = await answer.json();
    const ids = new Set(open.map((h) => h.id));
    for (const card of queue.querySelectorAll(".card")) {
      if (!ids.has(card.dataset.handoffId)) closed(card.dataset.handoffId);
    }
    for (const h of open) {
      add({
        handoff_id: h.id,
        problem_summary: (h.snapshot && h.snapshot.problem_summary) || "",
        engineer_notes: h.engineer_notes,
        actor_id: h.created_by,
        at: h.created_at,
      });
    }
    refreshEmpty();
    return true;
  }

  // "Seen" tells the service a push reached a person, so it need not email them as well. Only
  // what a visible page showed counts; failures are ignored (an email follows, nothing worse).
  function markSeen() {
    if (document.visibilityState !== "visible" || lastShown <= lastSeenSent) return;
    const upTo = lastShown;
    lastSeenSent = upTo;
    call("POST", "/escalations/seen", { last_event_id: String(upTo) }).catch(() => {});
  }

  function shown(event) {
    const id = Number(event.lastEventId);
    if (Number.isSafeInteger(id) && id > lastShown) lastShown = id;
    markSeen();
  }

  function parse(event) {
    try {
      return JSON.parse(event.data) || {};
    } catch (e) {
      return {};
    }
  }

  function connect() {
    const stream = new EventSource(boot.api + "/escalations/stream", { withCredentials: true });
    let loaded = Promise.resolve(true);
    stream.addEventListener("open", () => {
      setLive("live", "live");
      // Whatever was raised between this page's rendering and the stream's start is in the
      // queue fetched now, so what stream.ready's position covers is on the page once it is in.
      loaded = reload();
    });
    stream.addEventListener("error", () => {
      if (stream.readyState === EventSource.CLOSED) setLive("off", "offline: reload the page");
      else setLive("connecting", "reconnecting…");
    });
    stream.addEventListener("stream.ready", (event) => {
      loaded.then(() => shown(event));
    });
    stream.addEventListener("stream.reset", () => {
      loaded = reload();
    });
    stream.addEventListener("escalation.created", (event) => {
      add(parse(event));
      shown(event);
    });
    stream.addEventListener("escalation.reminded", (event) => {
      const data = parse(event);
      add(data);
      const card = cardFor(data.handoff_id);
      if (card) {
        const badge = card.querySelector(".badge");
        badge.hidden = false;
        badge.textContent = "reminder " + (data.round || "");
      }
      shown(event);
    });
    stream.addEventListener("escalation.claimed", (event) => {
      const data = parse(event);
      const by = data.claimed_by || data.actor_id;
      retire(data.handoff_id, by === boot.member_id ? "You claimed it." : "Claimed by " + nameOf(by));
      shown(event);
    });
    stream.addEventListener("escalation.withdrawn", (event) => {
      const data = parse(event);
      retire(data.handoff_id, "Withdrawn by " + nameOf(data.actor_id));
      shown(event);
    });
  }

  for (const card of queue.querySelectorAll(".card")) wire(card);
  document.addEventListener("visibilitychange", markSeen);
  refreshEmpty();
  connect();
})();
