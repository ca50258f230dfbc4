// emotion-stream live dashboard. Plain JavaScript, no dependencies.
//
// Connects to the streamer's own /events WebSocket (passing on ?token= from this page's URL),
// keeps a bounded history per stream and renders the selected stream: a timeline of
// utterances, live partial transcripts and SVG plots. All text from events is untrusted:
// it only ever reaches the DOM through textContent / setAttribute, never innerHTML.
"use strict";

const MAX_UTTERANCES = 500;      // per stream; older ones are dropped
const MAX_ENDED_STREAMS = 50;    // ended streams kept in the list
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 10000;
const NOTICE_MS = 8000;
const MAX_PLOT_DOTS = 150;       // per series; beyond this only the lines are drawn
const MAX_ALERT_SPANS = 100;     // per stream, for the party lanes; older ones are dropped
const LANE_HEIGHT = 26;          // px per party lane
const SVG_NS = "http://www.w3.org/2000/svg";

// LABEL_COLOURS: palette.js (shared with the HTML report).
const DIMENSION_COLOURS = { valence: "#0b7285", arousal: "#e8590c", dominance: "#5c940d" };
const CHANNEL_COLOURS = ["#364fc7", "#c2255c", "#2b8a3e", "#862e9c", "#d9480f", "#0b7285"];

// ---------------------------------------------------------------- state

const state = {
  streams: new Map(),        // stream_id -> stream record (see newStream)
  selected: null,            // stream_id shown in the main area
  view: "detail",            // "detail" (one stream) or "wall" (every call; wall.js)
  hiddenChannels: new Set(), // channels of the selected stream filtered out
  socket: null,
  attempt: 0,                // reconnect attempts since the last successful open
  seq: 0,                    // client-side id for timeline rows
};

function newStream(id) {
  return {
    id,
    channels: [],            // every channel seen
    activeChannels: new Set(),
    labels: [],              // model label order, from stream.started or first probabilities
    utterances: [],          // {seq, kind: "utterance" | "divider", ...}
    partials: new Map(),     // utterance_id -> latest utterance.partial
    seen: new Set(),         // utterance_id@wall_time of the kept utterances (replays repeat them)
    count: 0,
    lastLabel: null,
    offset: 0,               // x offset of the current run (a restarted stream's clock restarts)
    maxX: 0,
    lastT: new Map(),        // channel -> last t_end in this run
    alerts: [],              // {id, channel, rule, severity, x0, x1, active}: spans on the lanes
    endedAt: null,
  };
}

function streamFor(id) {
  let stream = state.streams.get(id);
  if (!stream) {
    stream = newStream(id);
    state.streams.set(id, stream);
  }
  return stream;
}

function addChannel(stream, channel) {
  if (!stream.channels.includes(channel)) stream.channels.push(channel);
}

// ---------------------------------------------------------------- DOM helpers

function $(id) { return document.getElementById(id); }

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function svgEl(tag, attrs) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
  return node;
}

function hashHue(text) {
  let h = 0;
  for (const ch of String(text)) h = (h * 31 + ch.codePointAt(0)) >>> 0;
  return h % 360;
}

function labelColour(label) {
  const known = LABEL_COLOURS[String(label).toLowerCase()];
  return known || `hsl(${hashHue(label)}, 55%, 50%)`;
}

function channelColour(stream, channel) {
  const index = stream.channels.indexOf(channel);
  return CHANNEL_COLOURS[(index < 0 ? 0 : index) % CHANNEL_COLOURS.length];
}

function labelChip(label, extraClass) {
  const chip = el("span", "label-chip" + (extraClass ? " " + extraClass : ""), label);
  chip.style.backgroundColor = labelColour(label);
  chip.dataset.label = label;
  return chip;
}

function percent(value) { return `${Math.round(Number(value) * 100)}%`; }

function seconds(value) { return `${Number(value).toFixed(1)} s`; }

function isNumber(value) { return typeof value === "number" && Number.isFinite(value); }

// ---------------------------------------------------------------- connection

function pageToken() {
  return new URLSearchParams(location.search).get("token");
}

function serverUrl(path, protocol) {
  const url = new URL(path, location.href);
  if (protocol) url.protocol = protocol;
  const token = pageToken();
  if (token) url.searchParams.set("token", token);
  return url.toString();
}

function connect() {
  setStatus("connecting", "connecting…");
  const ws = new WebSocket(serverUrl("events", location.protocol === "https:" ? "wss:" : "ws:"));
  let opened = false;
  state.socket = ws;
  ws.onopen = () => {
    opened = true;
    state.attempt = 0;
    setStatus("open", "live");
    // Every call's current state at once (the server answers with call.summary events).
    ws.send(JSON.stringify({ type: "summary.request", streams: "*" }));
  };
  ws.onmessage = (message) => handleMessage(JSON.parse(message.data));
  ws.onclose = () => {
    state.socket = null;
    clearPartials();
    scheduleReconnect(opened);
  };
}

async function scheduleReconnect(wasOpen) {
  const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** state.attempt);
  const wait = Math.round(delay * (0.75 + Math.random() * 0.25));
  state.attempt += 1;
  if (!wasOpen && await refusedForToken()) {
    setStatus("unauthorized", "token missing or wrong: open this page with ?token=…");
  } else {
    setStatus("closed", `disconnected, retrying in ${(wait / 1000).toFixed(1)} s`);
  }
  setTimeout(connect, wait);
}

// A refused WebSocket handshake does not tell the page why; ask the HTTP API instead.
async function refusedForToken() {
  try {
    const response = await fetch(serverUrl("api/streams"), { cache: "no-store" });
    return response.status === 401;
  } catch (error) {
    return false; // the server is down
  }
}

function setStatus(stateName, text) {
  const status = $("status");
  status.dataset.state = stateName;
  $("status-text").textContent = text;
}

let noticeTimer = null;
function showNotice(text) {
  const notice = $("notice");
  notice.textContent = text;
  notice.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => { notice.hidden = true; }, NOTICE_MS);
}

// ---------------------------------------------------------------- events

function handleMessage(event) {
  wallEvent(event);
  switch (event.type) {
    case "hello": onHello(event); break;
    case "stream.started": onStreamStarted(event); break;
    case "stream.ended": onStreamEnded(event); break;
    case "utterance.partial": onPartial(event); break;
    case "utterance.emotion": onEmotion(event); break;
    case "speaker.revised": onSpeakerRevised(event); break;
    case "alert": onAlert(event); break;
    case "alert.cleared": onAlertCleared(event); break;
    case "subscriber.lagged":
      showNotice(`Missed ${event.dropped} events: the dashboard fell behind.`);
      break;
    case "error": showNotice(`Server: ${event.message}`); break;
    default: break; // "subscribed" and future types
  }
}

// hello lists what is active now; anything else we knew of ended while we were away.
function onHello(event) {
  const active = new Map(event.streams.map((s) => [s.stream_id, s.channels]));
  for (const stream of state.streams.values()) {
    if (!active.has(stream.id)) markEnded(stream);
  }
  for (const [id, channels] of active) {
    const stream = streamFor(id);
    stream.activeChannels = new Set(channels);
    stream.endedAt = null;
    channels.forEach((channel) => addChannel(stream, channel));
  }
  render.all();
}

function onStreamStarted(event) {
  const stream = streamFor(event.stream_id);
  addChannel(stream, event.channel);
  stream.activeChannels.add(event.channel);
  stream.endedAt = null;
  if (Array.isArray(event.labels) && event.labels.length) stream.labels = event.labels.slice();
  render.streamList();
  if (stream.id === state.selected || state.selected === null) render.all();
}

function onStreamEnded(event) {
  const stream = streamFor(event.stream_id);
  stream.activeChannels.delete(event.channel);
  for (const [id, partial] of stream.partials) {
    if (partial.channel === event.channel) stream.partials.delete(id);
  }
  if (stream.activeChannels.size === 0) markEnded(stream);
  pruneEndedStreams();
  render.streamList();
  if (stream.id === state.selected) render.partials();
}

function markEnded(stream) {
  stream.activeChannels.clear();
  stream.partials.clear();
  if (stream.endedAt === null) stream.endedAt = Date.now();
}

function pruneEndedStreams() {
  const ended = [...state.streams.values()].filter((s) => s.endedAt !== null);
  ended.sort((a, b) => a.endedAt - b.endedAt);
  for (const stream of ended.slice(0, Math.max(0, ended.length - MAX_ENDED_STREAMS))) {
    if (stream.id !== state.selected) state.streams.delete(stream.id);
  }
}

function onPartial(event) {
  const stream = streamFor(event.stream_id);
  addChannel(stream, event.channel);
  stream.partials.set(event.utterance_id, event);
  if (stream.id === state.selected) render.partials();
}

function onEmotion(event) {
  const stream = streamFor(event.stream_id);
  const key = `${event.utterance_id}@${event.wall_time}`;
  if (stream.seen.has(key)) return; // replayed after a reconnect: already shown
  stream.seen.add(key);
  addChannel(stream, event.channel);
  stream.partials.delete(event.utterance_id);
  if (!stream.labels.length && event.speech !== false) {
    stream.labels = Object.keys(event.probabilities || {});
  }
  const records = [];
  const lastT = stream.lastT.get(event.channel);
  if (lastT !== undefined && event.t_end < lastT) {
    // The stream's clock went back: the streamer (or the source) restarted.
    stream.offset = stream.maxX + 1;
    stream.lastT.clear();
    records.push({ seq: ++state.seq, kind: "divider", text: "stream restarted" });
  }
  stream.lastT.set(event.channel, event.t_end);
  const x = stream.offset + event.t_end;
  stream.maxX = Math.max(stream.maxX, x);
  records.push({ seq: ++state.seq, kind: "utterance", x, x0: stream.offset + event.t_start, event });
  // An active alert's span runs on while its party (any party, for call-wide ones) speaks.
  for (const span of stream.alerts) {
    if (span.active && (span.channel === event.channel || span.channel === "call")) {
      span.x1 = Math.max(span.x1, x);
    }
  }
  stream.utterances.push(...records);
  if (stream.utterances.length > MAX_UTTERANCES) {
    const dropped = stream.utterances.splice(0, stream.utterances.length - MAX_UTTERANCES);
    for (const r of dropped) {
      if (r.kind === "utterance") stream.seen.delete(`${r.event.utterance_id}@${r.event.wall_time}`);
    }
  }
  stream.count += 1;
  stream.lastLabel = event.label;
  render.streamList();
  const previous = state.selected;
  if (selectedStream() !== stream) return;
  if (previous !== stream.id) {
    render.all(); // first stream seen: it was just selected
  } else {
    records.forEach(appendTimelineRow);
    render.partials();
    render.plots();
  }
}

// speakers.revise_window: the streamer re-clustered the channel's recent utterances and
// moved some to another speaker; the rows and lanes show the revised label.
function onSpeakerRevised(event) {
  const stream = state.streams.get(event.stream_id);
  if (!stream) return;
  const revised = new Map(event.revisions.map((r) => [r.utterance_id, r.revised]));
  let changed = false;
  for (const record of stream.utterances) {
    if (record.kind === "utterance" && revised.has(record.event.utterance_id)) {
      record.event = { ...record.event, speaker: revised.get(record.event.utterance_id) };
      changed = true;
    }
  }
  if (changed && selectedStream() === stream) {
    render.timeline();
    render.plots();
  }
}

// An alert is drawn as a span on its party's lane (every lane for call-wide alerts), from
// the first triggering utterance until it clears.
function onAlert(event) {
  const stream = streamFor(event.stream_id);
  const start = isNumber(event.t_start) ? stream.offset + event.t_start : stream.maxX;
  const end = isNumber(event.t_end) ? stream.offset + event.t_end : stream.maxX;
  stream.alerts.push({
    id: event.alert_id, channel: event.channel, rule: event.rule_id, severity: event.severity,
    message: event.message, x0: start, x1: Math.max(start, end), active: true,
  });
  if (stream.alerts.length > MAX_ALERT_SPANS) stream.alerts.splice(0, stream.alerts.length - MAX_ALERT_SPANS);
  if (selectedStream() === stream) render.plots();
}

function onAlertCleared(event) {
  const stream = state.streams.get(event.stream_id);
  const span = stream && stream.alerts.find((a) => a.id === event.alert_id);
  if (!span) return;
  span.active = false;
  if (selectedStream() === stream) render.plots();
}

function clearPartials() {
  for (const stream of state.streams.values()) stream.partials.clear();
  render.partials();
}

// ---------------------------------------------------------------- selection

function selectStream(id) {
  if (state.selected !== id) state.hiddenChannels.clear();
  state.selected = id;
  history.replaceState(null, "", `#stream=${encodeURIComponent(id)}`);
  render.all();
}

function selectedStream() {
  if (state.selected !== null && state.streams.has(state.selected)) {
    return state.streams.get(state.selected);
  }
  const first = [...state.streams.values()].find((s) => s.endedAt === null)
    || state.streams.values().next().value;
  if (!first) return null;
  state.selected = first.id;
  return first;
}

function initialSelection() {
  const match = /^#stream=(.+)$/.exec(location.hash);
  if (match) state.selected = decodeURIComponent(match[1]);
}

function toggleChannel(channel) {
  if (state.hiddenChannels.has(channel)) state.hiddenChannels.delete(channel);
  else state.hiddenChannels.add(channel);
  render.all();
}

function channelShown(channel) { return !state.hiddenChannels.has(channel); }

// ---------------------------------------------------------------- rendering

// Coalesce bursts of events into one paint per frame.
const render = (() => {
  const pending = new Set();
  let frame = null;
  const painters = {
    streamList: renderStreamList,
    header: renderHeader,
    timeline: renderTimeline,
    partials: renderPartials,
    plots: renderPlots,
    wall: renderWall,
  };
  function request(name) {
    pending.add(name);
    if (frame === null) frame = requestAnimationFrame(flush);
  }
  function flush() {
    frame = null;
    selectedStream(); // settle the selection before painting anything
    const names = [...pending];
    pending.clear();
    // Only the view on screen is painted; switching views repaints the other one whole.
    for (const name of Object.keys(painters)) {
      if (names.includes(name) && (name === "wall") === (state.view === "wall")) painters[name]();
    }
  }
  const api = { all: () => Object.keys(painters).forEach(request) };
  for (const name of Object.keys(painters)) api[name] = () => request(name);
  return api;
})();

function renderStreamList() {
  const list = $("streams");
  list.replaceChildren();
  for (const stream of state.streams.values()) list.append(streamItem(stream));
  $("no-streams").hidden = state.streams.size > 0;
}

function streamItem(stream) {
  const item = el("li");
  const button = el("button", "stream");
  button.type = "button";
  button.dataset.streamId = stream.id;
  button.dataset.state = stream.endedAt === null ? "live" : "ended";
  if (stream.id === state.selected) button.setAttribute("aria-current", "true");
  const top = el("span", "stream-top");
  top.append(el("span", "stream-id", stream.id), el("span", "stream-state", button.dataset.state));
  const bottom = el("span", "stream-bottom");
  bottom.append(el("span", "stream-channels", stream.channels.join(" · ") || "—"));
  bottom.append(el("span", "stream-count", `${stream.count} utt.`));
  if (stream.lastLabel !== null) bottom.append(labelChip(stream.lastLabel, "small"));
  button.append(top, bottom);
  button.addEventListener("click", () => selectStream(stream.id));
  item.append(button);
  return item;
}

function renderHeader() {
  const stream = selectedStream();
  $("stream-title").textContent = stream ? stream.id : "—";
  const box = $("channels");
  box.replaceChildren();
  if (!stream) return;
  for (const channel of stream.channels) {
    const chip = el("button", "channel-chip", channel);
    chip.type = "button";
    chip.dataset.channel = channel;
    chip.setAttribute("aria-pressed", String(channelShown(channel)));
    chip.style.borderColor = channelColour(stream, channel);
    if (stream.activeChannels.has(channel)) chip.classList.add("live");
    chip.addEventListener("click", () => toggleChannel(channel));
    box.append(chip);
  }
}

function renderTimeline() {
  $("timeline").replaceChildren();
  const stream = selectedStream();
  if (!stream) return;
  stream.utterances.forEach(appendTimelineRow);
  scrollToEnd();
}

function appendTimelineRow(record) {
  const stream = selectedStream();
  if (record.kind === "utterance" && !channelShown(record.event.channel)) return;
  const follow = nearBottom();
  const list = $("timeline");
  list.append(record.kind === "divider" ? dividerRow(record) : utteranceRow(stream, record.event));
  while (list.childElementCount > MAX_UTTERANCES) list.firstElementChild.remove();
  if (follow) scrollToEnd();
}

function dividerRow(record) {
  return el("li", "divider", record.text);
}

function utteranceRow(stream, event) {
  const row = el("li", "utt");
  row.dataset.utteranceId = event.utterance_id;
  row.dataset.channel = event.channel;
  row.dataset.label = event.label;
  row.style.borderLeftColor = labelColour(event.label);

  const meta = el("div", "utt-meta");
  const channel = el("span", "channel", event.channel);
  channel.style.color = channelColour(stream, event.channel);
  meta.append(channel);
  // speakers.enabled: the channel's speaker (S1, S2, ... or an enrolled name), one per utterance
  if (event.speaker) meta.append(el("span", "speaker", event.speaker));
  meta.append(el("span", "time", `${seconds(event.t_start)}–${seconds(event.t_end)}`));

  const body = el("div", "utt-body");
  body.append(el("p", "text", event.text || "(no words)"));
  body.append(probabilityBars(stream, event.probabilities || {}));

  const side = el("div", "utt-side");
  side.append(labelChip(event.label));
  if (event.speech === false) {
    // No emotion claim: the streamer judged this not to be usable speech.
    row.classList.add("nonspeech");
    side.append(el("span", "confidence", `not speech (${event.abstain_reason})`));
  } else {
    side.append(el("span", "confidence", `${percent(event.confidence)} confident`));
  }
  const dims = dimensionsText(event);
  if (dims) side.append(el("span", "dims", dims));
  if (event.latency && isNumber(event.latency.total_ms)) {
    side.append(el("span", "latency", `latency ${Math.round(event.latency.total_ms)} ms`));
  }
  row.append(meta, body, side);
  return row;
}

function probabilityBars(stream, probabilities) {
  const box = el("div", "probs");
  const names = stream.labels.length ? stream.labels : Object.keys(probabilities);
  for (const name of names) {
    const value = Number(probabilities[name] || 0);
    const item = el("span", "prob");
    item.dataset.label = name;
    const bar = el("span", "bar");
    const fill = el("span", "fill");
    fill.style.width = percent(value);
    fill.style.backgroundColor = labelColour(name);
    bar.append(fill);
    item.append(el("span", "name", name), bar, el("span", "value", value.toFixed(2)));
    box.append(item);
  }
  return box;
}

function dimensionsText(event) {
  const parts = [];
  for (const key of ["valence", "arousal", "dominance"]) {
    if (isNumber(event[key])) parts.push(`${key[0].toUpperCase()} ${event[key].toFixed(2)}`);
  }
  return parts.join(" · ");
}

function renderPartials() {
  const list = $("partials");
  list.replaceChildren();
  const stream = selectedStream();
  if (!stream) return;
  const follow = nearBottom();
  for (const partial of stream.partials.values()) {
    if (channelShown(partial.channel)) list.append(partialRow(stream, partial));
  }
  if (follow) scrollToEnd();
}

function partialRow(stream, partial) {
  const row = el("li", "utt partial");
  row.dataset.utteranceId = partial.utterance_id;
  row.dataset.channel = partial.channel;
  const meta = el("div", "utt-meta");
  const channel = el("span", "channel", partial.channel);
  channel.style.color = channelColour(stream, partial.channel);
  meta.append(channel, el("span", "time", `${seconds(partial.t_start)}–…`));
  const stable = partial.stable_text || "";
  const text = partial.text || "";
  const tentative = text.startsWith(stable) ? text.slice(stable.length) : text;
  const line = el("p", "text");
  line.append(el("span", "stable", text.startsWith(stable) ? stable : ""));
  line.append(el("span", "tentative", tentative));
  const body = el("div", "utt-body");
  body.append(line);
  const side = el("div", "utt-side");
  side.append(el("span", "speaking", "speaking…"));
  row.append(meta, body, side);
  return row;
}

// The timeline follows new rows unless the reader scrolled up to read older ones.
function nearBottom() {
  const box = document.querySelector(".timeline-wrap");
  return box.scrollHeight - box.scrollTop - box.clientHeight < 80;
}

function scrollToEnd() {
  const box = document.querySelector(".timeline-wrap");
  box.scrollTop = box.scrollHeight;
}

// ---------------------------------------------------------------- plots

function renderPlots() {
  const stream = selectedStream();
  const points = stream
    ? stream.utterances.filter((r) => r.kind === "utterance" && r.event.speech !== false
      && channelShown(r.event.channel))
    : [];
  const labels = stream ? stream.labels : [];
  const probSeries = labels.map((label) => ({
    name: label,
    colour: labelColour(label),
    points: points.map((r) => [r.x, Number((r.event.probabilities || {})[label] || 0), r.event]),
  }));
  drawChart($("prob-plot"), probSeries, [0, 1]);
  drawLegend($("prob-legend"), probSeries);
  drawLanes($("lanes-plot"), stream, points);

  const dimSeries = ["valence", "arousal", "dominance"].map((key) => ({
    name: key,
    colour: DIMENSION_COLOURS[key],
    points: points.filter((r) => isNumber(r.event[key])).map((r) => [r.x, r.event[key], r.event]),
  })).filter((series) => series.points.length > 0);
  $("dim-figure").hidden = dimSeries.length === 0;
  document.querySelector(".plots").classList.toggle("with-dims", dimSeries.length > 0);
  if (dimSeries.length) {
    const values = dimSeries.flatMap((s) => s.points.map((p) => p[1]));
    drawChart($("dim-plot"), dimSeries, [Math.min(0, ...values), Math.max(1, ...values)]);
    drawLegend($("dim-legend"), dimSeries);
  }
}

// Party lanes: one row per shown channel on one time axis; each utterance a box from its
// start to its end, coloured by label, as opaque as the model is confident; alerts as spans.
function drawLanes(svg, stream, points) {
  const channels = stream ? stream.channels.filter(channelShown) : [];
  const margin = { left: 84, right: 10, top: 4, bottom: 20 };
  const width = Math.max(200, svg.clientWidth || 800);
  const height = margin.top + margin.bottom + LANE_HEIGHT * Math.max(1, channels.length);
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.style.height = `${height}px`;
  svg.replaceChildren();
  if (!stream || !points.length) {
    const empty = svgEl("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "empty" });
    empty.textContent = "no utterances yet";
    svg.append(empty);
    return;
  }
  const xs = points.flatMap((r) => [r.x0, r.x]);
  let [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  if (x1 - x0 < 1) { x0 -= 0.5; x1 += 0.5; }
  const sx = (x) => margin.left + ((x - x0) / (x1 - x0)) * (width - margin.left - margin.right);
  const laneY = (i) => margin.top + i * LANE_HEIGHT;
  channels.forEach((channel, i) => {
    const lane = svgEl("g", { class: "lane", "data-channel": channel });
    lane.append(svgEl("line", { x1: margin.left, x2: width - margin.right, y1: laneY(i) + LANE_HEIGHT / 2,
      y2: laneY(i) + LANE_HEIGHT / 2, class: "grid" }));
    const name = svgEl("text", { x: margin.left - 6, y: laneY(i) + LANE_HEIGHT / 2 + 4, "text-anchor": "end",
      class: "lane-name", fill: channelColour(stream, channel) });
    name.textContent = channel;
    lane.append(name);
    for (const span of stream.alerts) {
      if (span.channel !== channel && span.channel !== "call") continue;
      const left = sx(Math.max(x0, span.x0));
      const box = svgEl("rect", {
        x: left.toFixed(1), y: laneY(i) + 1, height: LANE_HEIGHT - 2,
        width: Math.max(3, sx(Math.min(x1, span.x1)) - left).toFixed(1),
        fill: "#d93b3b", "fill-opacity": 0.12, stroke: "#d93b3b",
        "stroke-dasharray": span.active ? "none" : "4 3", class: "alert-span",
        "data-alert-id": span.id, "data-state": span.active ? "active" : "cleared",
      });
      const title = svgEl("title");
      title.textContent = `alert ${span.rule} (${span.severity}${span.active ? ", active" : ", cleared"}): ${span.message || ""}`;
      box.append(title);
      lane.append(box);
    }
    for (const r of points) {
      if (r.event.channel !== channel) continue;
      const left = sx(r.x0);
      const confidence = isNumber(r.event.confidence) ? r.event.confidence : 0;
      const box = svgEl("rect", {
        x: left.toFixed(1), y: laneY(i) + 5, height: LANE_HEIGHT - 10, rx: 2,
        width: Math.max(2, sx(r.x) - left).toFixed(1), fill: labelColour(r.event.label),
        "fill-opacity": (0.3 + 0.7 * confidence).toFixed(2), class: "lane-utt",
        "data-utterance-id": r.event.utterance_id, "data-label": r.event.label,
      });
      const title = svgEl("title");
      title.textContent = `${r.event.label} ${percent(confidence)} · ${channel}`
        + `${r.event.speaker ? ` (${r.event.speaker})` : ""} ${seconds(r.event.t_start)}–${seconds(r.event.t_end)}: ${r.event.text}`;
      box.append(title);
      lane.append(box);
    }
    svg.append(lane);
  });
  drawTimeTicks(svg, x0, x1, sx, height);
}

function drawLegend(box, series) {
  box.replaceChildren();
  for (const s of series) {
    const item = el("span", "legend-item");
    const swatch = el("span", "swatch");
    swatch.style.backgroundColor = s.colour;
    item.append(swatch, el("span", null, s.name));
    box.append(item);
  }
}

// One line per series over x = stream seconds, y in yDomain; drawn at the SVG's real size.
function drawChart(svg, series, yDomain) {
  const width = Math.max(200, svg.clientWidth || 800);
  const height = Number(svg.dataset.height) || 160;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.replaceChildren();
  const margin = { left: 34, right: 10, top: 8, bottom: 20 };
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  let [x0, x1] = xs.length ? [Math.min(...xs), Math.max(...xs)] : [0, 10];
  if (x1 - x0 < 1) { x0 -= 0.5; x1 += 0.5; }
  const [y0, y1] = yDomain;
  const sx = (x) => margin.left + ((x - x0) / (x1 - x0)) * (width - margin.left - margin.right);
  const sy = (y) => height - margin.bottom - ((y - y0) / (y1 - y0)) * (height - margin.top - margin.bottom);

  drawAxes(svg, { x0, x1, y0, y1, sx, sy, width, height, margin });
  for (const s of series) {
    const coords = s.points.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`);
    svg.append(svgEl("polyline", {
      points: coords.join(" "), fill: "none", stroke: s.colour, "stroke-width": 2,
      "stroke-linejoin": "round", class: "series", "data-series": s.name,
    }));
    if (s.points.length > MAX_PLOT_DOTS) continue;
    for (const [x, y, event] of s.points) {
      const dot = svgEl("circle", { cx: sx(x).toFixed(1), cy: sy(y).toFixed(1), r: 3, fill: s.colour });
      const title = svgEl("title");
      title.textContent = `${s.name} ${y.toFixed(2)} · ${event.channel}: ${event.text}`;
      dot.append(title);
      svg.append(dot);
    }
  }
  if (!xs.length) {
    const empty = svgEl("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "empty" });
    empty.textContent = "no utterances yet";
    svg.append(empty);
  }
}

function drawAxes(svg, { x0, x1, y0, y1, sx, sy, width, height, margin }) {
  for (const y of niceTicks(y0, y1, 4)) {
    svg.append(svgEl("line", { x1: margin.left, x2: width - margin.right, y1: sy(y), y2: sy(y), class: "grid" }));
    const label = svgEl("text", { x: margin.left - 6, y: sy(y) + 4, "text-anchor": "end", class: "tick" });
    label.textContent = String(Math.round(y * 100) / 100);
    svg.append(label);
  }
  drawTimeTicks(svg, x0, x1, sx, height);
}

// Stream seconds along the bottom of a chart.
function drawTimeTicks(svg, x0, x1, sx, height) {
  for (const x of niceTicks(x0, x1, 8)) {
    const label = svgEl("text", { x: sx(x), y: height - 4, "text-anchor": "middle", class: "tick" });
    label.textContent = `${Math.round(x * 10) / 10}`;
    svg.append(label);
  }
}

function niceTicks(lo, hi, count) {
  const raw = (hi - lo) / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((s) => s >= raw) || raw;
  const ticks = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(v);
  return ticks;
}

// ---------------------------------------------------------------- start

function start() {
  initialSelection();
  startWall();
  render.all();
  window.addEventListener("resize", () => render.plots());
  connect();
}

start();
