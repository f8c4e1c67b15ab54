// The live page of the events API: recent events from the query API, then
// every new one from the SSE stream, with the filter given in the page's
// URL (the parameters of PROTOCOL.md's Filters), and the server's
// rejections as red rows. Event content is only ever set as text.
"use strict";

// The filter parameters the API takes; the page passes these, and only
// these, from its URL to the API.
const FIELDS = ["topic", "category", "entity", "action", "key", "actor_id", "actor_type", "job_id", "causation_id", "sender", "status", "depends_on"];
const FILTER_PARAMS = new Set([...FIELDS, ...FIELDS.map((f) => "exclude_" + f), "tenant", "since", "until"]);
const HISTORY = 100;   // events shown from the query API on opening
const MAX_ROWS = 500;  // rows kept on the page
const TOKEN_KEY = "txoutbox-events-key";

const $ = (id) => document.getElementById(id);
const rows = $("events");
const filter = new URLSearchParams();
for (const [k, v] of new URLSearchParams(location.search)) {
  if (FILTER_PARAMS.has(k) && v !== "") filter.append(k, v);
}

let token = sessionStorage.getItem(TOKEN_KEY) || "";
let lastPosition = null; // the position the stream resumes after
let lastRejection = 0;   // the seq of the last rejection shown
let source = null;
let retry = 0;
let shownEvents = 0;
let shownRejections = 0;

function setState(text) { $("state").textContent = text; }

function say(text) {
  $("message").textContent = text;
  $("message").hidden = !text;
}

function counts() {
  $("counts").textContent = shownEvents + " events, " + shownRejections + " rejections shown" +
    (filter.toString() ? " · filter " + decodeURIComponent(filter.toString()) : "");
}

// --- The filter form: its values come from the URL, and submitting it
// loads the page with the new filter in the URL, so a link reproduces it.

function setupFilterForm() {
  const form = $("filter");
  const inForm = new Set();
  for (const input of form.querySelectorAll("input[name]")) {
    inForm.add(input.name);
    input.value = filter.getAll(input.name).join(",");
  }
  const extra = [...filter].filter(([k]) => !inForm.has(k));
  if (extra.length > 0) {
    $("extra").textContent = "Also filtered by " + extra.map(([k, v]) => k + "=" + v).join(", ") + " (from the URL; kept).";
    $("extra").hidden = false;
  }
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const next = new URLSearchParams();
    for (const [k, v] of extra) next.append(k, v);
    for (const input of form.querySelectorAll("input[name]")) {
      if (input.value.trim() !== "") next.append(input.name, input.value.trim());
    }
    location.search = next.toString();
  });
  $("clear").addEventListener("click", () => { location.search = ""; });
}

// --- Credentials: none in development mode; else a key the user pastes,
// kept in this tab's session storage, sent as a header to the query API and
// to POST /api/tickets, never put in a URL.

function headers() { return token ? { Authorization: "Bearer " + token } : {}; }

function askForKey(why) {
  setState("needs a key");
  $("login-why").textContent = why;
  $("login").hidden = false;
  $("token").focus();
}

function setupLogin() {
  $("login").addEventListener("submit", (e) => {
    e.preventDefault();
    token = $("token").value.trim();
    $("token").value = "";
    if (!token) return;
    sessionStorage.setItem(TOKEN_KEY, token);
    $("login").hidden = true;
    start();
  });
  $("forget-key").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    location.reload();
  });
}

// apiError reads the message of an error answer.
async function apiError(resp) {
  try {
    const body = await resp.json();
    if (body.error && body.error.message) return body.error.message;
    if (body.message) return body.message;
  } catch (e) { /* not JSON */ }
  return resp.status + " " + resp.statusText;
}

async function get(path) {
  return fetch(path, { headers: headers(), cache: "no-store" });
}

// --- Rows.

function cell(text, cls) {
  const td = document.createElement("td");
  if (cls) td.className = cls;
  td.textContent = text == null ? "" : String(text);
  return td;
}

function preCell(text) {
  const pre = document.createElement("pre");
  pre.textContent = text;
  const td = document.createElement("td");
  td.appendChild(pre);
  return td;
}

function time(t) {
  const d = new Date(t);
  return isNaN(d) ? "" : d.toLocaleTimeString();
}

function place(tr, atTop) {
  if (atTop) rows.prepend(tr); else rows.append(tr);
  while (rows.children.length > MAX_ROWS) rows.lastChild.remove();
}

function eventRow(ev) {
  const tr = document.createElement("tr");
  const actor = [ev.actor_type, ev.actor_id].filter(Boolean).join(" ");
  tr.append(cell(ev.position), cell(time(ev.received_at)), cell(ev.topic), cell(ev.key, "mono"),
    cell(ev.tenant), cell(actor), cell(ev.job_id, "mono"), cell(ev.id, "mono"), preCell(JSON.stringify(ev.data)));
  return tr;
}

function showEvent(ev, live) {
  const tr = eventRow(ev);
  if (live) tr.className = "new";
  place(tr, live);
  shownEvents++;
  counts();
}

function showRejection(rj) {
  if (rj.seq <= lastRejection) return; // sent again after a reconnect
  lastRejection = rj.seq;
  const tr = document.createElement("tr");
  tr.className = "new rejected";
  const where = rj.index === undefined ? "" : " record " + rj.index;
  tr.append(cell("✗" + where), cell(time(rj.received_at)), cell(rj.topic || "(" + rj.format + ")"),
    cell(""), cell(""), cell(rj.sender), cell(""), cell(rj.id, "mono"),
    preCell(rj.code + " (" + rj.status + "): " + rj.error));
  place(tr, true);
  shownRejections++;
  counts();
}

function showNotice(n) {
  const tr = document.createElement("tr");
  tr.className = "new notice";
  const td = cell("server notice " + n.code + ": " + n.message);
  td.colSpan = 9;
  tr.append(td);
  place(tr, true);
}

// --- Loading: the newest position first, unfiltered, so that the history
// (filtered, up to it) and the stream (after it) miss nothing between them.

async function loadHistory() {
  const head = new URLSearchParams({ order: "desc", limit: "1" });
  if (filter.has("tenant")) head.set("tenant", filter.get("tenant"));
  let resp = await get("api/events?" + head);
  if (resp.status === 401) {
    askForKey(token ? "The key was refused: " + await apiError(resp) : "This events API needs a key.");
    return false;
  }
  if (!resp.ok) {
    // A key without the query right still streams, without history.
    say("No history: " + await apiError(resp));
    return true;
  }
  const newest = (await resp.json()).events;
  lastPosition = newest.length > 0 ? newest[0].position : 0;
  const q = new URLSearchParams(filter);
  q.set("order", "desc");
  q.set("limit", String(HISTORY));
  q.set("before", String(lastPosition + 1));
  resp = await get("api/events?" + q);
  if (!resp.ok) {
    say("The filter was refused: " + await apiError(resp));
    return false;
  }
  for (const ev of (await resp.json()).events) showEvent(ev, false);
  return true;
}

// --- The stream. The page reconnects by itself, after the last event it
// showed, with a new ticket when it needs one (a ticket opens one stream).

async function openStream() {
  try {
    await connect();
  } catch (e) {
    reconnect("cannot reach the events API");
  }
}

async function connect() {
  setState("connecting…");
  const q = new URLSearchParams(filter);
  q.set("rejections", "true");
  if (lastPosition !== null) q.set("last_event_id", String(lastPosition));
  if (token) {
    const resp = await fetch("api/tickets", { method: "POST", headers: headers(), cache: "no-store" });
    if (resp.status === 401) {
      askForKey("The key was refused: " + await apiError(resp));
      return;
    }
    if (!resp.ok) {
      reconnect("no ticket: " + await apiError(resp));
      return;
    }
    q.set("ticket", (await resp.json()).ticket);
  }
  source = new EventSource("api/stream?" + q);
  source.onopen = () => { retry = 0; setState("live"); };
  source.onmessage = (m) => {
    const ev = JSON.parse(m.data);
    if (lastPosition !== null && ev.position <= lastPosition) return;
    lastPosition = ev.position;
    showEvent(ev, true);
  };
  source.addEventListener("rejected", (m) => showRejection(JSON.parse(m.data)));
  source.addEventListener("notice", (m) => showNotice(JSON.parse(m.data)));
  source.onerror = () => reconnect("the stream ended");
}

function reconnect(why) {
  if (source) { source.close(); source = null; }
  const wait = Math.min(10000, 500 * 2 ** retry++);
  setState(why + "; reconnecting in " + Math.round(wait / 1000) + " s…");
  setTimeout(openStream, wait);
}

async function start() {
  $("forget").hidden = !token;
  setState("loading…");
  let ok = true;
  try {
    ok = await loadHistory();
  } catch (e) {
    say("No history: cannot reach the events API.");
  }
  if (ok) await openStream();
}

setupFilterForm();
setupLogin();
counts();
start();
