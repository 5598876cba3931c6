// breakglass console: live state over server-sent events, and the STOP form sent with fetch.
// Without this script the page still works: the forms post and the page re-renders.
"use strict";

(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  // A digest naming this page's own session (not a secret): another login in this browser replaces the
  // cookie, and the poll answer then names another session, whose CSRF token this page does not hold.
  const mine = (document.querySelector('meta[name="console-session"]') || {}).content || "";
  const $ = (id) => document.getElementById(id);
  let ageBase = null; // [age_ms at receipt, performance.now() at receipt]
  let loggedOut = false; // the session ended or was replaced: nothing the page shows is live any more
  // What the page says once it no longer holds a live session of its own.
  const ENDED = {
    cause: "Logged out: this page no longer receives the state, so the system may be running or " +
      "halted. Log in again to see it.",
    fleet: "Unknown: logged out, this page no longer receives the readers' reports.",
    sources: "Readers of another source: unknown. Log in again to see whether any reader " +
      "would not stop when this serve halts.",
    panel: null, // each panel's own sentence (data-while-signed-in)
    who: "Not signed in: this console session has ended.",
    button: "Log in again",
    age: "none since the session ended",
    announce: "The system's state is now unknown: logged out",
  };
  const REPLACED = {
    cause: "Session replaced: this tab no longer receives the state, so the system may be running or " +
      "halted. Reload to see it.",
    fleet: "Unknown: this tab's session was replaced, it no longer receives the readers' reports.",
    sources: "Readers of another source: unknown. Reload to see whether any reader " +
      "would not stop when this serve halts.",
    panel: "Unknown: this tab's session was replaced. Reload to see it.",
    who: "Not signed in in this tab: its session was replaced. Reload to see who is signed in.",
    button: "Reload",
    age: "none since this tab's session was replaced",
    announce: "The system's state is now unknown: this tab's session was replaced",
  };
  let gone = ENDED;

  function announce(text) {
    const el = $("announce");
    el.textContent = "";
    window.setTimeout(() => { el.textContent = text; }, 50);
  }

  function text(el, value) { if (el) { el.textContent = value; } }

  function cell(row, value, header, label) {
    const el = document.createElement(header ? "th" : "td");
    if (header) { el.scope = "row"; }
    if (label) { el.dataset.label = label; }
    el.textContent = value;
    row.appendChild(el);
  }

  function renderState(s) {
    if (loggedOut) { return; } // an answer that arrives after the session ended is no longer known
    const box = $("state");
    box.classList.toggle("is-active", s.active);
    box.classList.toggle("is-halted", !s.active);
    const before = $("decision").textContent;
    const word = s.active ? "ACTIVE" : "HALTED";
    text($("decision"), word);
    document.title = word + " · breakglass console";
    text($("cause"), s.active ? "The system may run."
      : "The system is stopped: " + s.cause + (s.detail ? " (" + s.detail + ")" : "") + ".");
    ageBase = s.age_ms === null || s.age_ms === undefined ? null : [s.age_ms, performance.now()];
    tick();
    if (before !== word) { announce("The system is now " + word); }
  }

  function renderTargets(s) {
    const body = $("targets").tBodies[0];
    body.replaceChildren();
    for (const t of s.targets) {
      const p = (s.providers || []).find((x) => x.name === t.name);
      const row = document.createElement("tr");
      row.dataset.target = t.name;
      cell(row, t.name, true);
      cell(row, p && p.value === true ? "on" : p && p.value === false ? "off" : "unknown", false, "Reads");
      const last = t.last;
      cell(row, last ? (last.active ? "resume" : "halt") + (last.ok ? " acknowledged" : " FAILED: " + last.error)
        : t.configured ? "none yet" : "no admin credentials", false, "Last change");
      cell(row, last ? last.finished_at : "", false, "When");
      cell(row, last ? Math.round(last.latency_ms) + " ms" : "", false, "Took");
      body.appendChild(row);
    }
  }

  function renderSuspension(s) {
    if (loggedOut) { return; }
    const box = $("suspension-body");
    box.replaceChildren();
    const sus = s.suspension;
    if (!sus) {
      const p = document.createElement("p");
      p.textContent = "None open.";
      box.appendChild(p);
      return;
    }
    const dl = document.createElement("dl");
    const pairs = [["Stopped by", sus.opened_by], ["When", sus.opened_at], ["Why", sus.reason]];
    if (sus.incident) { pairs.push(["Incident", sus.incident]); }
    for (const [k, v] of pairs) {
      const dt = document.createElement("dt");
      dt.textContent = k;
      const dd = document.createElement("dd");
      dd.textContent = v;
      dl.append(dt, dd);
    }
    box.appendChild(dl);
  }

  function renderFleet(s) {
    if (!s.fleet) { return; }
    text($("fleet-line"), s.fleet.line);
    // An alarm, not a detail: these readers will not stop when this serve halts.
    const alarm = $("fleet-sources");
    if (alarm) {
      const n = s.fleet.another_source || 0;
      alarm.hidden = !n;
      text($("fleet-sources-count"), n + (n === 1 ? " reader reads" : " readers read") + " another source");
      text($("fleet-sources-then"), (n === 1 ? "it" : "they") + " will NOT stop when this serve halts.");
      text($("fleet-sources-readers"), (s.fleet.another_source_readers || []).join(", "));
    }
  }

  function renderAll(s) {
    if (loggedOut) { return; }
    renderState(s);
    renderTargets(s);
    renderSuspension(s);
    renderFleet(s);
  }

  function tick() {
    const el = $("age");
    if (loggedOut) { text(el, gone.age); return; }
    if (!ageBase) { text(el, "never"); return; }
    const ms = ageBase[0] + (performance.now() - ageBase[1]);
    text(el, (ms / 1000).toFixed(1) + " s ago");
  }
  window.setInterval(tick, 500);

  function renderHistory(items) {
    if (loggedOut) { return; }
    const body = $("history").tBodies[0];
    body.replaceChildren();
    for (const s of items) {
      const row = document.createElement("tr");
      const values = [["Stopped", s.opened_at], ["By", s.opened_by], ["Why", s.reason],
        ["Resumed", s.closed_at || "still halted"], ["By", s.closed_by || ""]];
      for (const [label, value] of values) { cell(row, value, false, label); }
      body.appendChild(row);
    }
  }

  // A running drill (`breakglass drill run`) posts its progress; the latest drill's lines show here.
  function addDrillLine(line) {
    if (loggedOut) { return; }
    if ($("drill-id").textContent !== line.drill_id) {
      $("drill-lines").replaceChildren();
      text($("drill-id"), line.drill_id);
      text($("drill-state"), "Drill in progress");
    }
    $("drill").hidden = false;
    const item = document.createElement("li");
    item.textContent = line.at.slice(11, 19) + " UTC  " + line.phase + ": " + line.text;
    $("drill-lines").appendChild(item);
    if (line.phase === "verdict") { text($("drill-state"), "Drill finished"); }
  }

  async function loadDrill() {
    const r = await fetch("/v1/drill/progress", { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (!r.ok) { return; }
    const board = await r.json();
    for (const line of board.lines) { addDrillLine(line); }
  }

  // The session ended (an admin ended it, or its lifetime ran out): say so once, and how to halt now.
  let loggedOutText = "";
  let source = null;
  async function sessionEnded(r) {
    if (loggedOut) { return; }
    loggedOut = true;
    let detail = "your console session has ended; log in again";
    try { detail = (await r.json()).detail || detail; } catch (e) { /* keep the plain sentence */ }
    loggedOutText = "This page can no longer halt: " + detail + ". Until you do, an API token halts.";
    showResult("LOGGED OUT", loggedOutText, false);
    renderUnknown();
    disableActions("Logged out: this page can no longer halt or change anything (" + detail +
      "). Meanwhile, an API token halts.");
    if (source) { source.close(); text($("live"), "(no live updates: logged out)"); }
    // Each poll would now be refused as a failed login: audited, and counted towards this
    // address's limit, which a mistyped token at the next login would then meet at once.
    window.clearInterval(poll);
  }

  // Another login in this browser (another tab, perhaps another person) replaced the cookie. Its
  // answers are that session's, not this page's: the page must neither look live nor act, and must
  // never name or act as whoever signed in there, until a reload shows who that is.
  function sessionReplaced() {
    if (loggedOut) { return; }
    loggedOut = true;
    gone = REPLACED;
    loggedOutText = "This tab's session was replaced (signed in again in another tab, possibly as " +
      "another person): reload to act. Until then this tab halts nothing; the other tab or an API token halts.";
    showResult("SESSION REPLACED", loggedOutText, false);
    renderUnknown();
    disableActions("Session replaced: this tab can no longer halt or change anything. Reload to act.");
    if (source) { source.close(); text($("live"), "(no live updates: session replaced)"); }
    window.clearInterval(poll);
    // "Log out" would end the other tab's session (the cookie is its): the button only reloads now.
    const logout = document.querySelector("header form.logout");
    if (logout) {
      logout.addEventListener("submit", (event) => { event.preventDefault(); window.location.reload(); });
    }
  }

  // Fail closed: what the page no longer receives must not read as running, so the last known
  // state, the readers' counts and the targets' readings all give way to "unknown".
  function renderUnknown() {
    const box = $("state");
    box.classList.remove("is-active", "is-halted");
    box.classList.add("is-unknown");
    text($("decision"), "UNKNOWN");
    document.title = "UNKNOWN · breakglass console";
    text($("cause"), gone.cause);
    tick();
    text($("fleet-line"), gone.fleet);
    // Neither the last alarm nor the last all-clear: whether readers read another source is unknown now.
    const alarm = $("fleet-sources");
    if (alarm) {
      alarm.className = "notice";
      alarm.setAttribute("role", "status");
      alarm.textContent = gone.sources;
      alarm.hidden = false;
    }
    for (const el of document.querySelectorAll("#targets td[data-label='Reads'], " +
      "#targets td[data-label='Last change']")) { text(el, "unknown"); }
    for (const el of document.querySelectorAll("#targets td[data-label='When'], " +
      "#targets td[data-label='Took']")) { text(el, ""); }
    // The panels drawn from the state at the page's load (or a later answer) say nothing current any more.
    for (const panel of document.querySelectorAll("[data-while-signed-in]")) {
      const title = panel.querySelector("h2");
      if (title && panel.dataset.title) { text(title, panel.dataset.title); }
      const note = document.createElement("p");
      note.className = "notice";
      note.textContent = gone.panel || panel.dataset.whileSignedIn;
      panel.replaceChildren(...(title ? [title, note] : [note]));
    }
    const who = $("signed-in");
    if (who) { who.textContent = gone.who; }
    // Ended: the form still posts to /logout, which drops the dead cookie and leads to the login.
    text(document.querySelector("header form.logout button"), gone.button);
    announce(gone.announce);
  }

  // Every control the server would now refuse is disabled and says why; "Log out" (then in again) still works.
  function disableActions(why) {
    const dialog = $("stop-dialog");
    if (dialog && dialog.open) { dialog.close(); }
    const notice = $("session-ended");
    text(notice, why);
    notice.hidden = false;
    const controls = document.querySelectorAll("#stop-open, main form button, main form input:not([type=hidden]), " +
      "main form textarea, main form select");
    for (const el of controls) {
      el.disabled = true;
      el.title = why;
      el.setAttribute("aria-describedby", "session-ended");
    }
  }

  async function refresh() {
    if (loggedOut) { return; }
    const options = { credentials: "same-origin", headers: { Accept: "application/json" } };
    const r = await fetch("/v1/status", options);
    if (r.status === 401) { await sessionEnded(r); return; }
    if (r.ok) {
      const answer = await r.json();
      // Fail closed: an answer that names no session, or another one, is not this page's.
      if (!mine || answer.session !== mine) { sessionReplaced(); return; }
      renderAll(answer);
    }
    const h = await fetch("/v1/suspensions?limit=20", options);
    if (h.ok) { renderHistory((await h.json()).suspensions); }
  }

  // Silence is the absence of news: no event announces it, so the readers' line is polled.
  const poll = window.setInterval(() => { refresh().catch(() => {}); }, 2000);
  // Coming back to this tab (perhaps from the one that replaced its session): ask at once.
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") { refresh().catch(() => {}); }
  });

  function connect() {
    source = new EventSource("/v1/events");
    source.addEventListener("open", () => text($("live"), "(live)"));
    source.addEventListener("error", () => text($("live"), "(live updates reconnecting)"));
    source.addEventListener("snapshot", (e) => renderAll(JSON.parse(e.data)));
    source.addEventListener("state", (e) => { renderState(JSON.parse(e.data)); refresh(); });
    for (const kind of ["target", "halt", "halt-complete", "halt-failed", "resume", "resume-failed"]) {
      source.addEventListener(kind, () => { refresh(); });
    }
    source.addEventListener("drill", (e) => addDrillLine(JSON.parse(e.data)));
    source.addEventListener("ungated-resume", (e) => {
      const u = JSON.parse(e.data);
      showResult("UNGATED RESUME", "The flag was turned back on outside the resumption gate (through " +
        u.source + "): " + u.outcome + ". Reload to see the gate.", false);
      refresh();
    });
  }

  function showResult(title, body, good) {
    const box = $("result-live");
    box.hidden = false;
    box.classList.toggle("ok", good);
    box.classList.toggle("bad", !good);
    text($("result-live-title"), title);
    text($("result-live-text"), body);
    box.setAttribute("role", good ? "status" : "alert");
  }

  function describeTargets(answer) {
    const parts = (answer.targets || []).map((t) => t.target + ": " + (t.ok ? "acknowledged" : "FAILED (" + t.error + ")"));
    for (const p of answer.pending || []) { parts.push(p + ": waiting"); }
    return parts.join("; ");
  }

  async function send(url, payload) {
    if (loggedOut) { return [new Response(null, { status: 401 }), { detail: loggedOutText }]; }
    const r = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf, "Idempotency-Key": crypto.randomUUID() },
      body: JSON.stringify(payload),
    });
    if (r.status === 401) { await sessionEnded(r.clone()); }
    let answer = {};
    try { answer = await r.json(); } catch (e) { answer = { detail: "HTTP " + r.status }; }
    return [r, answer];
  }

  function wireStop() {
    const form = $("stop-form");
    if (!form) { return; }
    const dialog = $("stop-dialog");
    const opener = $("stop-open");
    // Browsers without invoker commands: open and close the dialog here.
    opener.addEventListener("click", () => { if (!dialog.open) { dialog.showModal(); } $("reason").focus(); });
    $("stop-cancel").addEventListener("click", () => { if (dialog.open) { dialog.close(); } });
    dialog.addEventListener("close", () => opener.focus());
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const button = $("stop-confirm");
      button.disabled = true;
      text(button, "Stopping…");
      try {
        const [r, answer] = await send("/v1/halt", {
          reason: $("reason").value,
          incident: $("incident").value || null,
          personal_data_affected: $("personal-data").checked,
          business_continuity: $("business").checked,
          severity: $("severity").value || null,
        });
        dialog.close();
        if (r.ok) {
          showResult("HALTED", "Stopped by " + answer.actor.name + ". " + describeTargets(answer), true);
        } else if (r.status === 401) {
          showResult("NOT HALTED", loggedOutText, false);
        } else if (answer.type === "/problems/not-halted") {
          showResult("NOT HALTED", answer.detail + " " + describeTargets(answer), false);
        } else {
          showResult("NOT HALTED", answer.detail || ("HTTP " + r.status), false);
        }
        form.reset();
        refresh();
      } catch (e) {
        dialog.close();
        showResult("NOT HALTED", "The console could not reach serve. Halt in the vendor's dashboard or with the kill switch.", false);
      } finally {
        button.disabled = loggedOut;
        text(button, "Confirm STOP");
      }
    });
  }

  function wireResume() {
    const form = $("resume-form");
    // A gated resume posts the form itself: the page comes back with the gate as it now stands.
    if (!form || form.dataset.gated) { return; }
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const button = $("resume-submit");
      button.disabled = true;
      try {
        const [r, answer] = await send("/v1/resume", { reason: $("resume-reason").value });
        if (r.ok) {
          showResult("Resumed", "Resumed by " + answer.actor.name + ". " + describeTargets(answer), true);
          form.reset();
        } else {
          showResult("NOT resumed", (answer.detail || ("HTTP " + r.status)) + " " + describeTargets(answer), false);
        }
        refresh();
      } finally {
        button.disabled = loggedOut;
      }
    });
  }

  wireStop();
  wireResume();
  connect();
  loadDrill().catch(() => {});
})();
