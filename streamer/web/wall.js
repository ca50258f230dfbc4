// emotion-stream supervisor wall: every active call as a compact tile, sorted by severity.
//
// Loaded before app.js and sharing its page (plain scripts, one global scope): app.js hands
// every event to wallEvent() and paints the wall through its per-frame render queue. The
// wall follows utterance.emotion (label, valence sparkline), alert / alert.cleared (badge)
// and call.summary (authoritative state: on connect the page sends summary.request, so a
// reconnecting wall is filled at once). Tiles are kept per call and updated in place; the
// order is recomputed only when a severity, an alert or the filters change.
// The alert feed (alerts.js) gets every event from here too and is shown beside the wall
// ("Alert feed" button) or alone (the "alerts" view: /alerts, the Alerts button).
"use strict";

const WALL_SPARK_POINTS = 30;    // per party, as in call.summary's "recent"
const WALL_ENDED_KEEP = 50;      // ended calls kept (greyed, at the end)
const SEVERITY_RANK = { none: 0, info: 1, warning: 2, critical: 3 };
const CALL_CHANNEL = "call";

const wall = {
  calls: new Map(),          // stream_id -> call record (see wallCall)
  roles: new Set(),          // every party name seen, for the role filter
  queues: new Set(),
  role: "*",
  queue: "*",
  alertingOnly: false,
  dirty: new Set(),          // stream ids whose tile must be redrawn
  orderDirty: true,
  filtersDirty: true,
  pendingAlerts: new Map(),  // alert_id -> its wall_time (s), until its badge is painted
  // Paint times (ms) and, per alert, ms from the alert event (its wall_time, the server's
  // clock) to its badge painted: the same clock when the page runs on the server's machine.
  stats: { renders: 0, totalMs: 0, lastMs: 0, maxMs: 0, tiles: 0, alertToPaintMs: [] },
};
window.wallStats = wall.stats; // read by the browser test and bench

function wallCall(id) {
  let call = wall.calls.get(id);
  if (!call) {
    call = {
      id, queue: null, parties: new Map(), alerts: new Map(), endedAt: null,
      lastAlertAt: 0, tile: null,
    };
    wall.calls.set(id, call);
    wall.orderDirty = true;
  }
  return call;
}

function wallParty(call, role) {
  let party = call.parties.get(role);
  if (!party) {
    party = { label: null, confidence: null, valence: [], labels: [], active: true };
    call.parties.set(role, party);
    if (!wall.roles.has(role)) { wall.roles.add(role); wall.filtersDirty = true; }
  }
  return party;
}

function wallTouch(call, reorder) {
  wall.dirty.add(call.id);
  if (reorder) wall.orderDirty = true;
  render.wall();
}

// Severity of a call under the role filter: call-wide alerts count for every role.
function callSeverity(call) {
  let best = 0;
  for (const alert of call.alerts.values()) {
    if (wall.role !== "*" && alert.channel !== wall.role && alert.channel !== CALL_CHANNEL) continue;
    best = Math.max(best, SEVERITY_RANK[alert.severity] || 0);
  }
  return best;
}

// ---------------------------------------------------------------- events

function wallEvent(event) {
  feedEvent(event);
  switch (event.type) {
    case "hello": wallHello(event); break;
    case "stream.started": {
      const call = wallCall(event.stream_id);
      if (call.endedAt !== null) { call.endedAt = null; wall.orderDirty = true; }
      wallParty(call, event.channel).active = true;
      wallTouch(call, false);
      break;
    }
    case "stream.ended": {
      const call = wall.calls.get(event.stream_id);
      if (!call) break;
      wallParty(call, event.channel).active = false;
      if ([...call.parties.values()].every((p) => !p.active)) wallEnd(call);
      wallTouch(call, false);
      break;
    }
    case "utterance.emotion": {
      if (event.speech === false) break;
      const call = wallCall(event.stream_id);
      const party = wallParty(call, event.channel);
      party.label = event.label;
      party.confidence = event.confidence;
      if (isNumber(event.valence)) {
        party.valence.push(event.valence);
        if (party.valence.length > WALL_SPARK_POINTS) party.valence.shift();
      }
      party.labels.push(event.label);
      if (party.labels.length > WALL_SPARK_POINTS) party.labels.shift();
      wallTouch(call, false);
      break;
    }
    case "alert": {
      const call = wallCall(event.stream_id);
      if (call.alerts.has(event.alert_id)) break; // a replayed alert we already hold
      call.alerts.set(event.alert_id, {
        alert_id: event.alert_id, rule_id: event.rule_id, channel: event.channel,
        severity: event.severity, message: event.message, since: event.wall_time,
      });
      call.lastAlertAt = Math.max(call.lastAlertAt, event.wall_time);
      wall.pendingAlerts.set(event.alert_id, event.wall_time);
      wallTouch(call, true);
      break;
    }
    case "alert.cleared": {
      const call = wall.calls.get(event.stream_id);
      if (call && call.alerts.delete(event.alert_id)) wallTouch(call, true);
      break;
    }
    case "call.summary": wallSummary(event); break;
    default: break;
  }
}

function wallHello(event) {
  const active = new Set(event.streams.map((s) => s.stream_id));
  for (const call of wall.calls.values()) {
    if (!active.has(call.id) && call.endedAt === null) wallEnd(call);
  }
  for (const s of event.streams) {
    const call = wallCall(s.stream_id);
    call.endedAt = null;
    s.channels.forEach((role) => { wallParty(call, role).active = true; });
    wall.dirty.add(call.id);
  }
  wall.orderDirty = true;
  render.wall();
}

function wallEnd(call) {
  call.endedAt = Date.now();
  call.alerts.clear();
  wall.orderDirty = true;
  const ended = [...wall.calls.values()].filter((c) => c.endedAt !== null)
    .sort((a, b) => a.endedAt - b.endedAt);
  for (const old of ended.slice(0, Math.max(0, ended.length - WALL_ENDED_KEEP))) {
    if (old.tile) old.tile.remove();
    wall.calls.delete(old.id);
  }
}

// A summary is the server's whole view of the call: it replaces what the page pieced together.
function wallSummary(event) {
  const call = wallCall(event.stream_id);
  if (event.queue && !wall.queues.has(event.queue)) {
    wall.queues.add(event.queue);
    wall.filtersDirty = true;
  }
  call.queue = event.queue;
  for (const [role, p] of Object.entries(event.parties)) {
    const party = wallParty(call, role);
    party.active = p.active;
    party.label = p.label;
    party.confidence = p.confidence;
    party.valence = p.valence.recent.slice(-WALL_SPARK_POINTS);
    party.labels = p.recent_labels.slice(-WALL_SPARK_POINTS);
  }
  call.alerts = new Map(event.alerts.map((a) => [a.alert_id, { ...a }]));
  call.lastAlertAt = Math.max(0, ...event.alerts.map((a) => a.since));
  if (!event.active) wallEnd(call);
  else if (call.endedAt !== null) call.endedAt = null;
  wallTouch(call, true);
}

// ---------------------------------------------------------------- rendering

function renderWall() {
  if (state.view !== "wall") return;
  const started = performance.now();
  if (wall.filtersDirty) renderWallFilters();
  for (const id of wall.dirty) {
    const call = wall.calls.get(id);
    if (call) paintTile(call);
  }
  wall.dirty.clear();
  if (wall.orderDirty) orderTiles();
  const ms = performance.now() - started;
  for (const wallTime of wall.pendingAlerts.values()) {
    wall.stats.alertToPaintMs.push(Math.round(Date.now() - wallTime * 1000));
  }
  wall.pendingAlerts.clear();
  if (wall.stats.alertToPaintMs.length > 100) wall.stats.alertToPaintMs.shift();
  wall.stats.renders += 1;
  wall.stats.totalMs += ms;
  wall.stats.lastMs = ms;
  wall.stats.maxMs = Math.max(wall.stats.maxMs, ms);
}

function wallShown(call) {
  if (wall.queue !== "*" && call.queue !== wall.queue) return false;
  if (wall.role !== "*" && !call.parties.has(wall.role)) return false;
  return !wall.alertingOnly || callSeverity(call) > 0;
}

function orderTiles() {
  wall.orderDirty = false;
  const calls = [...wall.calls.values()];
  const rank = new Map(calls.map((c) => [c.id, callSeverity(c)]));
  calls.sort((a, b) => (a.endedAt !== null) - (b.endedAt !== null)
    || rank.get(b.id) - rank.get(a.id)
    || b.lastAlertAt - a.lastAlertAt
    || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const shown = [];
  for (const call of calls) {
    if (!call.tile) paintTile(call);
    call.tile.dataset.severity = Object.keys(SEVERITY_RANK)[rank.get(call.id)];
    if (wallShown(call)) shown.push(call.tile);
  }
  $("wall-tiles").replaceChildren(...shown);
  const live = calls.filter((c) => c.endedAt === null);
  const alerting = live.filter((c) => rank.get(c.id) > 0).length;
  wall.stats.tiles = shown.length;
  $("wall-count").textContent =
    `${live.length} active calls · ${alerting} alerting · ${shown.length} shown`;
  $("wall-empty").hidden = calls.length > 0;
}

function paintTile(call) {
  const tile = call.tile || el("button", "tile");
  if (!call.tile) {
    tile.type = "button";
    tile.dataset.streamId = call.id;
    tile.addEventListener("click", () => openCall(call.id));
    call.tile = tile;
  }
  const severity = Object.keys(SEVERITY_RANK)[callSeverity(call)];
  tile.dataset.severity = severity;
  tile.dataset.state = call.endedAt === null ? "live" : "ended";
  const head = el("span", "tile-head");
  head.append(el("span", "tile-id", call.id));
  if (call.queue) head.append(el("span", "tile-queue", call.queue));
  const alerts = [...call.alerts.values()].filter((a) => wall.role === "*"
    || a.channel === wall.role || a.channel === CALL_CHANNEL);
  if (alerts.length) {
    const top = alerts.reduce((a, b) => (SEVERITY_RANK[b.severity] > SEVERITY_RANK[a.severity] ? b : a));
    const badge = el("span", "alert-badge", alerts.length > 1 ? `${alerts.length} alerts` : top.rule_id);
    badge.dataset.severity = top.severity;
    badge.title = alerts.map((a) => `${a.severity}: ${a.message}`).join("\n");
    head.append(badge);
  } else if (call.endedAt !== null) {
    head.append(el("span", "tile-ended", "ended"));
  }
  const parties = el("span", "tile-parties");
  for (const [role, party] of call.parties) {
    if (wall.role !== "*" && role !== wall.role) continue;
    parties.append(partyLine(role, party));
  }
  tile.replaceChildren(head, parties);
  return tile;
}

function partyLine(role, party) {
  const line = el("span", "party");
  line.dataset.role = role;
  line.append(el("span", "party-role", role));
  if (party.label !== null) {
    line.append(labelChip(party.label, "small"));
    line.append(el("span", "party-conf", percent(party.confidence)));
  } else {
    line.append(el("span", "party-conf muted", party.active ? "listening" : "—"));
  }
  line.append(party.valence.length >= 2 ? sparkline(party.valence) : labelStrip(party.labels));
  return line;
}

// Valence of the party's recent utterances; the midline is neutral (0).
function sparkline(values) {
  const width = 72;
  const height = 18;
  const svg = svgEl("svg", { class: "spark", viewBox: `0 0 ${width} ${height}`, "aria-hidden": "true" });
  svg.append(svgEl("line", { x1: 0, x2: width, y1: height / 2, y2: height / 2, class: "spark-mid" }));
  if (values.length >= 2) {
    const lo = Math.min(-1, ...values);
    const hi = Math.max(1, ...values);
    // A short history still spans most of the line; a long one is WALL_SPARK_POINTS wide.
    const step = width / Math.max(values.length - 1, 7);
    const x0 = width - step * (values.length - 1);
    const points = values.map((v, i) =>
      `${(x0 + i * step).toFixed(1)},${(height - 1 - ((v - lo) / (hi - lo)) * (height - 2)).toFixed(1)}`);
    const last = values[values.length - 1];
    svg.append(svgEl("polyline", {
      points: points.join(" "), class: "spark-line", "data-trend": last < values[0] ? "down" : "up",
    }));
  }
  return svg;
}

// For models without valence: one block per recent utterance, in its label's colour.
function labelStrip(labels) {
  const width = 72;
  const height = 18;
  const svg = svgEl("svg", { class: "spark strip", viewBox: `0 0 ${width} ${height}`, "aria-hidden": "true" });
  const step = width / Math.max(labels.length, 8);
  const x0 = width - step * labels.length;
  labels.forEach((label, i) => {
    svg.append(svgEl("rect", {
      x: (x0 + i * step).toFixed(1), y: 4, width: Math.max(1, step - 0.6).toFixed(1), height: height - 8,
      fill: labelColour(label),
    }));
  });
  return svg;
}

function renderWallFilters() {
  wall.filtersDirty = false;
  fillSelect($("wall-queue"), wall.queues, wall.queue, "all queues");
  fillSelect($("wall-role"), wall.roles, wall.role, "all parties");
}

function fillSelect(select, values, current, allText) {
  const options = [el("option", null, allText)];
  options[0].value = "*";
  for (const value of [...values].sort()) {
    const option = el("option", null, value);
    option.value = value;
    options.push(option);
  }
  select.replaceChildren(...options);
  select.value = current;
}

function setWallFilter(key, value) {
  wall[key] = value;
  for (const call of wall.calls.values()) wall.dirty.add(call.id); // badges follow the role
  wall.orderDirty = true;
  render.wall();
}

// ---------------------------------------------------------------- views

function openCall(id) {
  showView("detail");
  selectStream(id);
}

// Views: "detail" (one call), "wall" (every call, the feed beside it when opened) and
// "alerts" (the feed alone).
function showView(view) {
  state.view = view;
  $("board").hidden = view === "detail";
  $("wall").hidden = view !== "wall";
  document.querySelector(".layout").hidden = view !== "detail";
  $("view-wall").setAttribute("aria-pressed", String(view === "wall"));
  $("view-alerts").setAttribute("aria-pressed", String(view === "alerts"));
  $("view-detail").setAttribute("aria-pressed", String(view === "detail"));
  document.body.dataset.view = view;
  feedShow();
  if (view === "alerts") {
    if (!/\/alerts$/.test(location.pathname)) history.replaceState(null, "", "#alerts");
  } else if (view === "wall") {
    history.replaceState(null, "", "#wall");
    for (const call of wall.calls.values()) wall.dirty.add(call.id);
    wall.orderDirty = true;
    render.wall();
  } else {
    render.all();
  }
}

function startWall() {
  startFeed();
  $("view-wall").addEventListener("click", () => showView("wall"));
  $("view-alerts").addEventListener("click", () => showView("alerts"));
  $("view-detail").addEventListener("click", () => {
    showView("detail");
    if (state.selected !== null) history.replaceState(null, "", `#stream=${encodeURIComponent(state.selected)}`);
  });
  $("wall-queue").addEventListener("change", (e) => setWallFilter("queue", e.target.value));
  $("wall-role").addEventListener("change", (e) => setWallFilter("role", e.target.value));
  $("wall-alerting").addEventListener("change", (e) => setWallFilter("alertingOnly", e.target.checked));
  const alerts = location.hash === "#alerts" || /\/alerts$/.test(location.pathname);
  const wanted = location.hash === "#wall" || /\/wall$/.test(location.pathname);
  showView(alerts ? "alerts" : wanted ? "wall" : "detail");
}
