// emotion-stream alert feed: every alert newest first, with the utterances that made it fire,
// acknowledged and snoozed from here (docs/dashboard.md, "Alert feed").
//
// Shares the page (and its global scope) with app.js and wall.js: wall.js hands it every
// event (feedEvent) and shows it beside the wall (/wall, "Alert feed") or alone (/alerts).
// Filled from GET /api/alerts when it is first shown and after every reconnect (hello), so
// a reload keeps the history; kept live from the event stream: alert, alert.cleared,
// alert.ack, call.snoozed, call.summary (which also drops alerts the server no longer holds
// for a call, like the wall does) and utterance.emotion (the texts of the triggering
// utterances of a live alert; those the page did not hear are fetched from the API).
// Acknowledge and snooze go over the page's WebSocket; the server publishes alert.ack /
// call.snoozed to every open wall, this one included, and only then does the row change.
// Rows are kept per alert and repainted in place; all changes of one animation frame are
// painted together. Untrusted text reaches the DOM only through textContent.
"use strict";

const FEED_KEEP = 2000;           // alerts kept in the page; beyond, the oldest cleared go
const FEED_PAGE = 200;            // rows per /api/alerts request (its maximum)
const FEED_ACTIVE_PAGES = 5;      // pages of active alerts read on load, at most
const FEED_HEARD_KEEP = 20000;    // utterances remembered for live alerts' texts
const FEED_REFETCH_MS = [400, 1500]; // a live alert's missing utterances: ask the API then
const FEED_SHOWN_STEP = 50;      // rows painted at first; "Show more" adds as many again
const SNOOZE_MINUTES = [5, 15, 30, 60, 240];
const FEED_STATE_NAMES = {
  active: "active", cleared: "cleared", acked: "acknowledged", unacked: "not acknowledged",
  snoozed: "snoozed",
};

const feed = {
  alerts: new Map(),        // alert_id -> alert record (see feedAlert)
  byCall: new Map(),        // stream_id -> Set of alert_id
  snoozes: new Map(),       // stream_id -> {until, by, note, at} (wall-clock seconds)
  snoozeTimers: new Map(),  // stream_id -> timeout repainting the call's rows when it ends
  heard: new Map(),         // utterance_id -> {utterance_id, channel, text, label, confidence}
  rules: new Set(),
  parties: new Set(),
  rule: "*",
  party: "*",
  state: "*",
  limit: FEED_SHOWN_STEP,   // rows painted, newest first (the rest: "Show more")
  panelOpen: false,         // the panel beside the wall (the /alerts view always shows it)
  stale: true,              // (re)load from the API when next shown
  loading: false,
  available: true,          // false: this server keeps no alert history (404)
  dirty: new Set(),         // alert ids whose row must be repainted
  orderDirty: true,
  filtersDirty: true,
  frame: null,
  refetch: new Map(),       // stream_id -> tries so far, for alerts with missing utterances
  action: null,             // {alertId, kind: "ack" | "snooze", box} of the open action box
  pendingRows: new Map(),   // alert_id -> its wall_time, until its row is painted
  // Paint times (ms); per live alert, ms from its wall_time (the server's clock) to its
  // event received and to its row painted (one clock when the page runs on the server).
  stats: {
    renders: 0, lastMs: 0, maxMs: 0, rows: 0, matching: 0, alertToRowMs: [], alertToEventMs: [],
  },
};
window.feedStats = feed.stats; // read by the browser tests

function feedAlert(id) {
  let alert = feed.alerts.get(id);
  if (!alert) {
    alert = {
      alert_id: id, stream_id: "", channel: "", rule_id: "", kind: null, severity: "info",
      message: "", value: null, fired_at: 0, cleared_at: null, clear_reason: null,
      firedSnoozed: false, ack: null, utterance_ids: [], utterances: [], t_start: null,
      t_end: null, row: null,
    };
    feed.alerts.set(id, alert);
    feed.orderDirty = true;
  }
  return alert;
}

function feedIndex(alert) {
  let ids = feed.byCall.get(alert.stream_id);
  if (!ids) { ids = new Set(); feed.byCall.set(alert.stream_id, ids); }
  ids.add(alert.alert_id);
  if (!feed.rules.has(alert.rule_id)) { feed.rules.add(alert.rule_id); feed.filtersDirty = true; }
  if (!feed.parties.has(alert.channel)) { feed.parties.add(alert.channel); feed.filtersDirty = true; }
}

function feedTouch(alert) {
  feed.dirty.add(alert.alert_id);
  requestFeedPaint();
}

function feedTouchCall(streamId) {
  for (const id of feed.byCall.get(streamId) || []) feed.dirty.add(id);
  requestFeedPaint();
}

function feedActive(alert) { return alert.cleared_at === null; }

function callSnoozed(streamId, now) {
  const snooze = feed.snoozes.get(streamId);
  return snooze !== undefined && snooze.until > (now === undefined ? Date.now() / 1000 : now);
}

function feedSnoozed(alert) { return alert.firedSnoozed || callSnoozed(alert.stream_id); }

// A call the wall knows as live (hello, stream.started, summaries): alerts of other calls
// can no longer be cleared by the server (the call ended while the page was away).
function feedCallLive(streamId) {
  const call = wall.calls.get(streamId);
  return call !== undefined && call.endedAt === null;
}

// ---------------------------------------------------------------- events

function feedEvent(event) {
  switch (event.type) {
    case "hello":
      feed.stale = true;
      if (feedVisible()) feedLoad();
      requestFeedPaint(); // the header counts follow the live calls
      break;
    case "utterance.emotion":
      if (event.speech === false) break;
      feed.heard.set(event.utterance_id, {
        utterance_id: event.utterance_id, channel: event.channel, text: event.text,
        label: event.label, confidence: event.confidence, t_start: event.t_start, t_end: event.t_end,
      });
      if (feed.heard.size > FEED_HEARD_KEEP) feed.heard.delete(feed.heard.keys().next().value);
      break;
    case "alert": feedLiveAlert(event); break;
    case "alert.cleared": {
      const known = feed.alerts.has(event.alert_id);
      const alert = feedAlert(event.alert_id);
      if (!known) { // fired before the page loaded its history: what the event says of it
        Object.assign(alert, {
          stream_id: event.stream_id, channel: event.channel, rule_id: event.rule_id,
          kind: event.kind, severity: event.severity,
          fired_at: event.wall_time - (event.active_s || 0),
        });
        feedIndex(alert);
      }
      if (alert.cleared_at === null) {
        alert.cleared_at = event.wall_time;
        alert.clear_reason = event.reason;
      }
      feedTouch(alert);
      break;
    }
    case "alert.ack": {
      const alert = feed.alerts.get(event.alert_id);
      if (!alert) break; // not loaded: the API has it on the next load
      if (!alert.ack || event.wall_time >= alert.ack.at) {
        alert.ack = { by: event.by, at: event.wall_time, note: event.note };
      }
      if (feed.action && feed.action.alertId === alert.alert_id && feed.action.kind === "ack") {
        feed.action = null;
      }
      feedTouch(alert);
      break;
    }
    case "call.snoozed":
      feedSetSnooze(event.stream_id, { until: event.until, by: event.by, note: event.note, at: event.wall_time });
      if (feed.action && feed.action.kind === "snooze") {
        const open = feed.alerts.get(feed.action.alertId);
        if (open && open.stream_id === event.stream_id) feed.action = null;
      }
      break;
    case "call.summary": feedSummary(event); break;
    case "stream.started":
    case "stream.ended":
      if (feed.byCall.has(event.stream_id)) requestFeedPaint();
      break;
    default: break;
  }
}

function feedLiveAlert(event) {
  feed.stats.alertToEventMs.push(Math.round(Date.now() - event.wall_time * 1000));
  if (feed.stats.alertToEventMs.length > 100) feed.stats.alertToEventMs.shift();
  const alert = feedAlert(event.alert_id);
  const fresh = alert.row === null && alert.fired_at === 0;
  Object.assign(alert, {
    stream_id: event.stream_id, channel: event.channel, rule_id: event.rule_id, kind: event.kind,
    severity: event.severity, message: event.message, value: event.value,
    fired_at: event.wall_time, utterance_ids: event.utterance_ids || [],
    t_start: event.t_start, t_end: event.t_end,
  });
  if (fresh) alert.firedSnoozed = callSnoozed(event.stream_id, event.wall_time);
  if (alert.utterances.length < alert.utterance_ids.length) {
    const found = alert.utterance_ids.map((id) => feed.heard.get(id)).filter(Boolean);
    if (found.length > alert.utterances.length) alert.utterances = found;
    if (found.length < alert.utterance_ids.length) feedRefetch(alert.stream_id);
  }
  feedIndex(alert);
  feed.pendingRows.set(alert.alert_id, event.wall_time);
  feedTouch(alert);
}

// The server's view of one call: its alerts active now. Alerts the feed holds as active but
// the summary (newer than their firing) lacks were cleared while the page missed it.
function feedSummary(event) {
  const listed = new Map(event.alerts.map((a) => [a.alert_id, a]));
  for (const id of feed.byCall.get(event.stream_id) || []) {
    const alert = feed.alerts.get(id);
    if (feedActive(alert) && !listed.has(id) && alert.fired_at <= event.wall_time) {
      alert.cleared_at = event.wall_time;
      alert.clear_reason = event.active ? "condition_ended" : "stream_ended";
      feedTouch(alert);
    }
  }
  for (const a of listed.values()) {
    if (feed.alerts.has(a.alert_id)) continue;
    const alert = feedAlert(a.alert_id);
    Object.assign(alert, {
      stream_id: event.stream_id, channel: a.channel, rule_id: a.rule_id, severity: a.severity,
      message: a.message, fired_at: a.since,
    });
    feedIndex(alert);
    feedTouch(alert);
    // Its utterances and acknowledgement are in the store; a load under way brings them.
    if (!feed.loading && !feed.stale) feedRefetch(event.stream_id);
  }
  requestFeedPaint();
}

function feedSetSnooze(streamId, snooze) {
  clearTimeout(feed.snoozeTimers.get(streamId));
  feed.snoozeTimers.delete(streamId);
  if (snooze.until > snooze.at && snooze.until > Date.now() / 1000) {
    feed.snoozes.set(streamId, snooze);
    const ms = snooze.until * 1000 - Date.now() + 50;
    if (ms < 2 ** 31) {
      feed.snoozeTimers.set(streamId, setTimeout(() => {
        feed.snoozes.delete(streamId);
        feed.snoozeTimers.delete(streamId);
        feed.orderDirty = true; // the state filter may change what is shown
        feedTouchCall(streamId);
      }, ms));
    }
  } else {
    feed.snoozes.delete(streamId);
  }
  feed.orderDirty = true;
  feedTouchCall(streamId);
}

// An API row (GET /api/alerts): what the store knows; what the page saw live is kept where
// it is newer (a clear, a later acknowledgement).
function feedMerge(row) {
  const alert = feedAlert(row.alert_id);
  Object.assign(alert, {
    stream_id: row.stream_id, channel: row.channel, rule_id: row.rule_id, kind: row.kind,
    severity: row.severity, message: row.message, value: row.value, fired_at: row.fired_at,
    utterance_ids: row.utterance_ids || [], t_start: row.t_start, t_end: row.t_end,
  });
  if ((row.utterances || []).length >= alert.utterances.length) alert.utterances = row.utterances || [];
  if (row.cleared_at !== null && alert.cleared_at === null) {
    alert.cleared_at = row.cleared_at;
    alert.clear_reason = row.clear_reason;
  }
  alert.firedSnoozed = alert.firedSnoozed || Boolean(row.snoozed);
  if (row.ack && (!alert.ack || row.ack.at >= alert.ack.at)) alert.ack = row.ack;
  feedIndex(alert);
  feed.dirty.add(alert.alert_id);
}

// ---------------------------------------------------------------- the API

async function feedFetch(query) {
  const url = new URL(serverUrl("api/alerts"));
  for (const [key, value] of Object.entries(query)) url.searchParams.set(key, value);
  const response = await fetch(url.toString(), { cache: "no-store" });
  if (response.status === 404) { feed.available = false; return null; }
  if (!response.ok) throw new Error(`GET /api/alerts: HTTP ${response.status}`);
  feed.available = true;
  return response.json();
}

// The newest page and every active alert (a few pages at most), then the calls snoozed now.
async function feedLoad() {
  if (feed.loading) { feed.stale = true; return; }
  feed.loading = true;
  feed.stale = false;
  try {
    const newest = await feedFetch({ limit: String(FEED_PAGE) });
    if (newest !== null) {
      newest.alerts.forEach(feedMerge);
      let cursor = null;
      for (let page = 0; page < FEED_ACTIVE_PAGES; page += 1) {
        const query = { state: "active", limit: String(FEED_PAGE) };
        if (cursor) query.cursor = cursor;
        const active = await feedFetch(query);
        if (active === null) break;
        active.alerts.forEach(feedMerge);
        cursor = active.next;
        if (!cursor) break;
      }
      for (const snooze of newest.snoozes || []) {
        const known = feed.snoozes.get(snooze.stream_id);
        if (!known || snooze.at >= known.at) feedSetSnooze(snooze.stream_id, snooze);
      }
    }
    feed.orderDirty = true;
  } catch (error) {
    feed.stale = true;
    showNotice(`Alert feed: ${error.message}`);
  } finally {
    feed.loading = false;
    requestFeedPaint();
  }
  if (feed.stale && feedVisible()) feedLoad(); // a reconnect while loading
}

// Ask the store for a call's alerts again (the row of a live alert is written a moment
// after it fires): its utterances the page did not hear, a missed acknowledgement.
function feedRefetch(streamId) {
  if (!feed.available || feed.refetch.has(streamId)) return;
  feed.refetch.set(streamId, 0);
  const attempt = () => {
    const tries = feed.refetch.get(streamId);
    feedFetch({ call: streamId, limit: "50" }).then((page) => {
      if (page) page.alerts.forEach(feedMerge);
      requestFeedPaint();
      const missing = [...(feed.byCall.get(streamId) || [])].map((id) => feed.alerts.get(id))
        .some((a) => a.utterances.length < a.utterance_ids.length);
      if (missing && page && tries + 1 < FEED_REFETCH_MS.length) {
        feed.refetch.set(streamId, tries + 1);
        setTimeout(attempt, FEED_REFETCH_MS[tries + 1]);
      } else {
        feed.refetch.delete(streamId);
      }
    }).catch(() => feed.refetch.delete(streamId));
  };
  setTimeout(attempt, FEED_REFETCH_MS[0]);
}

// ---------------------------------------------------------------- actions

function feedWho() {
  const who = $("feed-who").value.trim();
  if (!who) {
    $("feed-who").focus();
    showNotice("Alert feed: enter your name (top of the feed) first: it is kept with the action.");
  }
  return who;
}

function feedSend(message) {
  const ws = state.socket;
  if (!ws || ws.readyState !== WebSocket.OPEN) {
    showNotice("Not connected: the action was not sent; try again when the page is live.");
    return false;
  }
  ws.send(JSON.stringify(message));
  return true;
}

function feedOpenAction(alert, kind) {
  const same = feed.action && feed.action.alertId === alert.alert_id && feed.action.kind === kind;
  const previous = feed.action && feed.alerts.get(feed.action.alertId);
  feed.action = same ? null : { alertId: alert.alert_id, kind, box: feedActionBox(alert, kind) };
  if (previous) feedTouch(previous);
  feedTouch(alert);
}

function feedActionBox(alert, kind) {
  const box = el("div", "feed-action");
  box.dataset.kind = kind;
  const note = el("input", "feed-note-input");
  note.type = "text";
  note.maxLength = 500;
  note.placeholder = "note (optional)";
  note.setAttribute("aria-label", "note");
  const confirm = el("button", "feed-confirm", kind === "ack" ? "Acknowledge" : "Snooze");
  confirm.type = "button";
  let minutes = null;
  if (kind === "snooze") {
    minutes = el("select", "feed-minutes");
    minutes.setAttribute("aria-label", "snooze for");
    for (const m of SNOOZE_MINUTES) {
      const option = el("option", null, m < 60 ? `${m} min` : `${m / 60} h`);
      option.value = String(m);
      minutes.append(option);
    }
    minutes.value = "15";
    box.append(minutes);
  }
  const cancel = el("button", "feed-cancel", "Cancel");
  cancel.type = "button";
  box.append(note, confirm, cancel);
  const submit = () => {
    const by = feedWho();
    if (!by) return;
    const sent = kind === "ack"
      ? feedSend({ type: "alert.ack", alert_id: alert.alert_id, by, note: note.value.trim() })
      : feedSend({ type: "call.snooze", call: alert.stream_id, minutes: Number(minutes.value), by,
        note: note.value.trim() });
    if (sent) {
      confirm.disabled = true;
      confirm.textContent = "sent…"; // the row changes when the server's event comes back
    }
  };
  confirm.addEventListener("click", submit);
  note.addEventListener("keydown", (e) => { if (e.key === "Enter") submit(); });
  cancel.addEventListener("click", () => { feed.action = null; feedTouch(alert); });
  return box;
}

function feedEndSnooze(alert) {
  const by = feedWho();
  if (by) feedSend({ type: "call.snooze", call: alert.stream_id, minutes: 0, by, note: "" });
}

// ---------------------------------------------------------------- rendering

function feedVisible() {
  return state.view === "alerts" || (state.view === "wall" && feed.panelOpen);
}

function requestFeedPaint() {
  if (feed.frame === null && feedVisible()) feed.frame = requestAnimationFrame(paintFeed);
}

function feedPrune() {
  if (feed.alerts.size <= FEED_KEEP) return;
  const old = [...feed.alerts.values()].filter((a) => !feedActive(a))
    .sort((a, b) => a.fired_at - b.fired_at);
  for (const alert of old.slice(0, feed.alerts.size - FEED_KEEP)) {
    feed.alerts.delete(alert.alert_id);
    feed.dirty.delete(alert.alert_id);
    const ids = feed.byCall.get(alert.stream_id);
    if (ids) { ids.delete(alert.alert_id); if (!ids.size) feed.byCall.delete(alert.stream_id); }
    if (alert.row) alert.row.remove();
  }
  feed.orderDirty = true;
}

function paintFeed() {
  feed.frame = null;
  if (!feedVisible()) return;
  const started = performance.now();
  feedPrune();
  if (feed.filtersDirty) renderFeedFilters();
  const changed = feed.dirty.size > 0;
  for (const id of feed.dirty) {
    const alert = feed.alerts.get(id);
    if (alert) paintFeedRow(alert);
  }
  feed.dirty.clear();
  // A change can move a row in or out of the state filter: re-check what is shown.
  if (feed.orderDirty || (changed && feed.state !== "*")) orderFeed();
  renderFeedCounts();
  const ms = performance.now() - started;
  for (const wallTime of feed.pendingRows.values()) {
    feed.stats.alertToRowMs.push(Math.round(Date.now() - wallTime * 1000));
  }
  feed.pendingRows.clear();
  if (feed.stats.alertToRowMs.length > 100) feed.stats.alertToRowMs.shift();
  feed.stats.renders += 1;
  feed.stats.lastMs = ms;
  feed.stats.maxMs = Math.max(feed.stats.maxMs, ms);
}

function feedShown(alert) {
  if (feed.rule !== "*" && alert.rule_id !== feed.rule) return false;
  if (feed.party !== "*" && alert.channel !== feed.party) return false;
  switch (feed.state) {
    case "active": return feedActive(alert);
    case "cleared": return !feedActive(alert);
    case "acked": return alert.ack !== null;
    case "unacked": return alert.ack === null;
    case "snoozed": return feedSnoozed(alert);
    default: return true;
  }
}

function orderFeed() {
  feed.orderDirty = false;
  const alerts = [...feed.alerts.values()].sort((a, b) => b.fired_at - a.fired_at
    || (a.alert_id < b.alert_id ? 1 : a.alert_id > b.alert_id ? -1 : 0));
  const rows = [];
  let matching = 0;
  for (const alert of alerts) {
    if (!feedShown(alert)) continue;
    matching += 1;
    if (rows.length >= feed.limit) continue; // painted rows are bounded: the page stays light
    if (!alert.row) paintFeedRow(alert);
    rows.push(alert.row);
  }
  $("feed-list").replaceChildren(...rows);
  feed.stats.rows = rows.length;
  feed.stats.matching = matching;
  const more = $("feed-more");
  more.hidden = matching <= rows.length;
  more.textContent = `Show ${Math.min(FEED_SHOWN_STEP, matching - rows.length)} more `
    + `(${matching - rows.length} older not shown)`;
}

// The counts in the feed's header; "alerting" counts live calls with an active alert, as
// the wall's header does (with its party filter at "all parties").
function renderFeedCounts() {
  const alertingCalls = new Set();
  let active = 0;
  let unacked = 0;
  for (const alert of feed.alerts.values()) {
    if (!feedActive(alert)) continue;
    active += 1;
    if (alert.ack === null) unacked += 1;
    if (feedCallLive(alert.stream_id)) alertingCalls.add(alert.stream_id);
  }
  const now = Date.now() / 1000;
  const snoozed = [...feed.snoozes.keys()].filter((id) => callSnoozed(id, now)).length;
  const count = $("feed-alerting");
  count.textContent = `${alertingCalls.size} alerting`;
  count.dataset.count = String(alertingCalls.size);
  const plural = (n, one, many) => `${n} ${n === 1 ? one : many}`;
  $("feed-count").textContent = ` · ${plural(active, "active alert", "active alerts")}`
    + ` · ${unacked} not acknowledged · ${plural(snoozed, "call", "calls")} snoozed`
    + ` · ${feed.stats.rows} of ${feed.stats.matching} shown`
    + (feed.stats.matching < feed.alerts.size ? ` (${feed.alerts.size} kept)` : "");
  const note = $("feed-empty");
  note.hidden = feed.stats.rows > 0 && feed.available;
  note.textContent = !feed.available
    ? "This server keeps no alert history (alerts are off): only alerts from now on are shown."
    : feed.alerts.size ? "No alert matches the filters." : "No alerts yet.";
  if (!feed.available && feed.stats.rows > 0) note.hidden = false;
}

function feedClock(seconds) {
  if (!isNumber(seconds)) return "—";
  const date = new Date(seconds * 1000);
  const two = (n) => String(n).padStart(2, "0");
  const time = `${two(date.getHours())}:${two(date.getMinutes())}:${two(date.getSeconds())}`;
  if (date.toDateString() === new Date().toDateString()) return time;
  return `${date.getFullYear()}-${two(date.getMonth() + 1)}-${two(date.getDate())} ${time}`;
}

// The strongest reading: the most confident triggering utterance, else the rule's value.
function feedPeak(alert) {
  const rated = alert.utterances.filter((u) => isNumber(u.confidence));
  if (rated.length) {
    const top = rated.reduce((a, b) => (b.confidence > a.confidence ? b : a));
    return { label: top.label, text: `${top.label} ${percent(top.confidence)}` };
  }
  if (!isNumber(alert.value)) return null;
  const units = { valence_trend: "/min", silence: " s" }[alert.kind] || "";
  return { label: null, text: `${alert.kind === "valence_trend" && alert.value > 0 ? "+" : ""}${
    Math.round(alert.value * 100) / 100}${units}` };
}

function paintFeedRow(alert) {
  const row = alert.row || el("li", "feed-row");
  alert.row = row;
  const active = feedActive(alert);
  const snoozed = feedSnoozed(alert);
  Object.assign(row.dataset, {
    alertId: alert.alert_id, streamId: alert.stream_id, rule: alert.rule_id,
    party: alert.channel, severity: alert.severity, state: active ? "active" : "cleared",
    acked: String(alert.ack !== null), snoozed: String(snoozed),
  });

  const head = el("div", "feed-head");
  const sev = el("span", "feed-sev", alert.severity);
  sev.dataset.severity = alert.severity;
  const call = el("button", "feed-call", alert.stream_id);
  call.type = "button";
  call.title = "open this call";
  call.addEventListener("click", () => openCall(alert.stream_id));
  head.append(sev, el("span", "feed-rule", alert.rule_id), call, el("span", "feed-party", alert.channel));
  const chips = el("span", "feed-chips");
  const stateChip = el("span", "feed-chip feed-state", active ? "active" : "cleared");
  stateChip.dataset.state = active ? "active" : "cleared";
  chips.append(stateChip);
  if (active && !feedCallLive(alert.stream_id) && wall.calls.size) {
    stateChip.title = "its call is not live on this server any more";
  }
  if (alert.ack) chips.append(el("span", "feed-chip feed-acked", "acknowledged"));
  if (snoozed) chips.append(el("span", "feed-chip feed-snoozed", "snoozed"));
  head.append(chips);

  const times = el("div", "feed-times");
  times.append(el("span", "feed-start", `start ${feedClock(alert.fired_at)}`));
  times.append(el("span", "feed-end", active ? "active" : `end ${feedClock(alert.cleared_at)}`));
  const peak = feedPeak(alert);
  if (peak) {
    const peakBox = el("span", "feed-peak", "peak ");
    if (peak.label) peakBox.append(labelChip(peak.label, "small"), ` ${peak.text.slice(peak.label.length + 1)}`);
    else peakBox.append(peak.text);
    times.append(peakBox);
  }
  const parts = [head, times];
  if (alert.message) parts.push(el("div", "feed-message", alert.message));

  if (alert.utterances.length) {
    const said = el("ul", "feed-utts");
    for (const u of alert.utterances) {
      const item = el("li", "feed-utt");
      item.dataset.utteranceId = u.utterance_id;
      item.append(el("span", "feed-utt-party", u.channel));
      item.append(el("q", "feed-utt-text", u.text || "(no words)"));
      item.append(labelChip(u.label, "small"));
      item.append(el("span", "feed-utt-conf", isNumber(u.confidence) ? percent(u.confidence) : ""));
      said.append(item);
    }
    parts.push(said);
  } else if (alert.utterance_ids.length) {
    parts.push(el("div", "feed-message muted", `${alert.utterance_ids.length} utterances (texts not kept)`));
  }
  if (alert.ack) {
    const ack = el("div", "feed-ack", `Acknowledged by ${alert.ack.by} at ${feedClock(alert.ack.at)}`);
    if (alert.ack.note) ack.append(el("span", "feed-ack-note", `: ${alert.ack.note}`));
    parts.push(ack);
  }
  const snooze = feed.snoozes.get(alert.stream_id);
  if (snooze && callSnoozed(alert.stream_id)) {
    const line = el("div", "feed-snooze",
      `Call snoozed by ${snooze.by} until ${feedClock(snooze.until)}${snooze.note ? `: ${snooze.note}` : ""}`);
    parts.push(line);
  } else if (alert.firedSnoozed) {
    parts.push(el("div", "feed-snooze", "Fired while its call was snoozed (no webhook sent)"));
  }

  const actions = el("div", "feed-actions");
  const ackButton = el("button", "feed-ack-button", alert.ack ? "Acknowledge again" : "Acknowledge");
  ackButton.type = "button";
  ackButton.addEventListener("click", () => feedOpenAction(alert, "ack"));
  const snoozeButton = el("button", "feed-snooze-button", "Snooze call");
  snoozeButton.type = "button";
  snoozeButton.addEventListener("click", () => feedOpenAction(alert, "snooze"));
  actions.append(ackButton, snoozeButton);
  if (callSnoozed(alert.stream_id)) {
    const end = el("button", "feed-unsnooze-button", "End snooze");
    end.type = "button";
    end.addEventListener("click", () => feedEndSnooze(alert));
    actions.append(end);
  }
  parts.push(actions);
  if (feed.action && feed.action.alertId === alert.alert_id) parts.push(feed.action.box);
  row.replaceChildren(...parts);
  return row;
}

function renderFeedFilters() {
  feed.filtersDirty = false;
  fillSelect($("feed-rule"), feed.rules, feed.rule, "all rules");
  fillSelect($("feed-party"), feed.parties, feed.party, "all parties");
}

function setFeedFilter(key, value) {
  feed[key] = value;
  feed.limit = FEED_SHOWN_STEP;
  feed.orderDirty = true;
  requestFeedPaint();
}

// Called by showView (wall.js) whenever the view or the panel changes.
function feedShow() {
  $("feed").hidden = !feedVisible();
  $("wall-feed").setAttribute("aria-pressed", String(feed.panelOpen));
  if (!feedVisible()) return;
  for (const id of feed.alerts.keys()) feed.dirty.add(id); // repaint what changed meanwhile
  feed.orderDirty = true;
  feed.filtersDirty = true;
  if (feed.stale && state.socket && state.socket.readyState === WebSocket.OPEN) feedLoad();
  requestFeedPaint();
}

function startFeed() {
  for (const [key, id] of [["rule", "feed-rule"], ["party", "feed-party"], ["state", "feed-state"]]) {
    $(id).addEventListener("change", (e) => setFeedFilter(key, e.target.value));
  }
  const states = [el("option", null, "any state")];
  states[0].value = "*";
  for (const [value, text] of Object.entries(FEED_STATE_NAMES)) {
    const option = el("option", null, text);
    option.value = value;
    states.push(option);
  }
  $("feed-state").replaceChildren(...states);
  const who = $("feed-who");
  try {
    who.value = localStorage.getItem("emotion-stream.who") || "";
    feed.panelOpen = localStorage.getItem("emotion-stream.feed-open") === "1";
  } catch (error) { /* storage off: nothing remembered */ }
  who.addEventListener("change", () => {
    try { localStorage.setItem("emotion-stream.who", who.value.trim()); } catch (error) { /* off */ }
  });
  $("feed-more").addEventListener("click", () => {
    feed.limit += FEED_SHOWN_STEP;
    feed.orderDirty = true;
    requestFeedPaint();
  });
  $("wall-feed").addEventListener("click", () => {
    feed.panelOpen = !feed.panelOpen;
    try { localStorage.setItem("emotion-stream.feed-open", feed.panelOpen ? "1" : "0"); } catch (error) { /* off */ }
    feedShow();
  });
}
