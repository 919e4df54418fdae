// The trend dashboard: plain JavaScript, no build step. Every key is shown with textContent, never
// as HTML, so a key holding markup stays text.
(() => {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const query = new URLSearchParams(location.search);
  const browserZone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  const ZONES = ["UTC", "Asia/Seoul", "Asia/Tokyo", "Europe/London", "Europe/Berlin", "America/New_York",
    "America/Los_Angeles"];
  const COLORS = ["#0b57d0", "#b3261e", "#0a7d33", "#8a3ffc", "#b06000"];
  // The time axis steps, in seconds: never finer than a bucket, so no two labels name the same minute.
  const X_STEPS = [60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800];
  // A key keeps its colour while the page is open, whatever its place in the top of each window.
  const keyColors = new Map();
  const FIELDS = ["event", "segment", "window", "interval", "by", "tz", "key"];
  const state = {
    event: query.get("event") || "", segment: query.get("segment") || "", window: query.get("window") || "1h",
    interval: query.get("interval") || "auto", tz: query.get("tz") || browserZone, key: query.get("key") || "",
    by: query.get("by") || "count",  // checked against the server's choices in loadDimensions
  };
  state.compare = query.getAll("compare").slice(0, 5);
  const MAX_COMPARED = 5;
  const WINDOW_SECONDS = { "5m": 300, "15m": 900, "1h": 3600, "6h": 21600, "24h": 86400, "7d": 604800 };
  // "auto" draws a window in about this many points at most: a day at 1m would be 1,440 spikes.
  const AUTO_POINTS = 200;
  const refreshSeconds = Math.max(1, Number(query.get("refresh")) || 5);
  const charts = {};  // container id → { plot, signature }
  let intervalLimits = {};  // interval → { seconds, max_points }, from /v1/dimensions
  let intervalOrder = [];
  let ranksCache = { signature: "", at: 0, ranks: [] };
  // What the tables and the chart show now, for the CSV buttons: exactly what is on the screen.
  const shown = { top: null, rising: null, chart: null };
  let timer = null;
  // The refresh in flight: a newer one aborts its requests, so a superseded answer is never drawn.
  let inFlight = null;

  // Sent when TREND_READ_KEY guards the reads; kept in this tab's session storage only.
  const KEY_STORE = "trend.readKey";

  class AuthError extends Error {}

  function saveState() {
    const next = new URLSearchParams();
    for (const field of FIELDS) if (state[field]) next.set(field, state[field]);
    for (const key of state.compare) next.append("compare", key);
    if (query.has("refresh")) next.set("refresh", String(refreshSeconds));
    history.replaceState(null, "", "?" + next.toString());
  }

  async function api(path, params) {
    const url = new URL(path, document.baseURI);  // relative, so the page works under any mount prefix
    for (const [name, value] of Object.entries(params || {})) {
      for (const one of Array.isArray(value) ? value : [value]) {
        if (one !== "" && one !== null && one !== undefined) url.searchParams.append(name, one);
      }
    }
    const headers = { Accept: "application/json" };
    const readKey = sessionStorage.getItem(KEY_STORE);
    if (readKey) headers.Authorization = `Bearer ${readKey}`;
    const response = await fetch(url, { headers, signal: inFlight ? inFlight.signal : undefined });
    let body = null;
    try { body = await response.json(); } catch (_) { body = null; }
    if (!response.ok) {
      const message = body && body.error ? body.error.message : `HTTP ${response.status}`;
      const Failure = response.status === 401 || response.status === 403 ? AuthError : Error;
      throw new Failure(`${url.pathname}: ${message}`);
    }
    return body;
  }

  function formatTime(iso, withDate) {
    if (!iso) return "–";
    const options = { timeZone: state.tz, hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" };
    if (withDate) Object.assign(options, { month: "short", day: "numeric" });
    return new Intl.DateTimeFormat("en-GB", options).format(new Date(iso));
  }

  // Colours for the keys shown together: each keeps the one it had, unless a key shown beside it has
  // it already; a key seen for the first time takes the first colour free.
  function colorsFor(keys) {
    const chosen = new Map();
    keys.forEach((key) => {
      const kept = keyColors.get(key);
      if (kept && ![...chosen.values()].includes(kept)) chosen.set(key, kept);
    });
    keys.forEach((key) => {
      if (chosen.has(key)) return;
      const taken = [...chosen.values()];
      const color = COLORS.find((one) => !taken.includes(one)) || COLORS[chosen.size % COLORS.length];
      chosen.set(key, color);
      keyColors.set(key, color);
    });
    return chosen;
  }

  function axisLabels(splits, step, container) {
    const options = { timeZone: state.tz, hourCycle: "h23" };
    Object.assign(options, step >= 86400 ? { month: "short", day: "numeric" } : { hour: "2-digit", minute: "2-digit" });
    const format = new Intl.DateTimeFormat("en-GB", options);
    const labels = splits.map((ts) => format.format(new Date(ts * 1000)));
    container.dataset.xLabels = labels.join("|");  // the canvas keeps no text; tests and tools read this
    return labels;
  }

  // A window that spans days names the date at both ends; "19:38:00 – 19:38:00" alone says nothing.
  function formatRange(start, end) {
    const day = new Intl.DateTimeFormat("en-GB", { timeZone: state.tz, dateStyle: "medium" });
    const sameDay = day.format(new Date(start)) === day.format(new Date(end));
    return `${formatTime(start, true)} – ${formatTime(end, !sameDay)}`;
  }

  function cell(text, className) {
    const td = document.createElement("td");
    if (className) td.className = className;
    if (text instanceof Node) td.append(text); else td.textContent = text;
    return td;
  }

  // Characters that print nothing (controls, format characters, unassigned, private use, separators):
  // a key holding one looks like another key, so it is marked, with its code points in the title.
  const NON_PRINTING = /[\p{C}\p{Zl}\p{Zp}]/gu;

  function nonPrinting(key) {
    return [...key.matchAll(NON_PRINTING)].map((m) => "U+" + m[0].codePointAt(0).toString(16).toUpperCase().padStart(4, "0"));
  }

  function keyButton(key) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "key";
    button.textContent = key;
    const hidden = nonPrinting(key);
    if (hidden.length) {
      button.classList.add("non-printing");
      button.title = `holds characters that do not print: ${hidden.join(" ")}`;
      const mark = document.createElement("span");
      mark.className = "mark";
      mark.textContent = " ⚠";
      button.append(mark);
    }
    button.dataset.key = key;
    button.setAttribute("aria-pressed", String(state.key === key));
    button.addEventListener("click", () => {
      state.key = state.key === key ? "" : key;
      saveState();
      // On a phone the key's view is below both tables: bring it into sight once it is drawn.
      refresh(true).then(() => { if (state.key === key) $("key-view").scrollIntoView({ block: "start" }); });
    });
    return button;
  }

  function compareButton(key) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "compare";
    button.textContent = "+";
    button.title = `Compare ${key}`;
    button.setAttribute("aria-label", `compare ${key}`);
    button.setAttribute("aria-pressed", String(state.compare.includes(key)));
    button.addEventListener("click", () => toggleCompared(key));
    return button;
  }

  function toggleCompared(key) {
    if (state.compare.includes(key)) {
      state.compare = state.compare.filter((one) => one !== key);
    } else if (state.compare.length < MAX_COMPARED) {
      state.compare = [...state.compare, key];
    } else {
      showNote(`At most ${MAX_COMPARED} keys can be compared; remove one first.`);
      return;
    }
    saveState();
    refresh(true);
  }

  function renderCompared() {
    const chips = state.compare.map((key) => {
      const chip = document.createElement("span");
      chip.className = "chip";
      const name = document.createElement("span");
      name.textContent = key;
      const remove = document.createElement("button");
      remove.type = "button";
      remove.textContent = "×";
      remove.setAttribute("aria-label", `stop comparing ${key}`);
      remove.addEventListener("click", () => toggleCompared(key));
      chip.append(name, remove);
      return chip;
    });
    $("compare").replaceChildren(...chips);
  }

  function showNote(text) {
    const note = $("chart-note");
    note.textContent = text;
    note.hidden = !text;
  }

  function change(item) {
    const span = document.createElement("span");
    if (item.is_new) {
      span.className = "badge";
      span.textContent = "NEW";
    } else if (item.rank_change > 0) {
      span.className = "up";
      span.textContent = `▲ ${item.rank_change}`;
      span.setAttribute("aria-label", `up ${item.rank_change}`);
    } else if (item.rank_change < 0) {
      span.className = "down";
      span.textContent = `▼ ${-item.rank_change}`;
      span.setAttribute("aria-label", `down ${-item.rank_change}`);
    } else {
      span.className = "same";
      span.textContent = "–";
      span.setAttribute("aria-label", "unchanged");
    }
    return span;
  }

  // Rows are replaced only when their content changed, so a refresh never flickers.
  function replaceRows(table, rows, signature, emptyText, columns) {
    const body = table.tBodies[0];
    if (body.dataset.signature === signature) return;
    body.dataset.signature = signature;
    if (!rows.length) {
      const tr = document.createElement("tr");
      tr.className = "empty-row";
      const td = cell(emptyText);
      td.colSpan = columns;
      tr.append(td);
      body.replaceChildren(tr);
      return;
    }
    body.replaceChildren(...rows);
  }

  function renderTop(top) {
    shown.top = top;
    $("top-range").textContent = formatRange(top.start, top.end);
    // Beside the count: users, or the measure the list ranks by when it is another one.
    const second = state.by === "count" || state.by === "users" ? "users" : state.by;
    $("top-second").textContent = second[0].toUpperCase() + second.slice(1);
    const rows = top.items.map((item) => {
      const tr = document.createElement("tr");
      if (item.key === state.key) tr.className = "selected";
      // users is null where it cannot be known (buckets from before users were counted).
      const value = item[second] === null ? "–" : item[second].toLocaleString();
      tr.append(cell(String(item.rank)), cell(keyButton(item.key)), cell(item.count.toLocaleString(), "num"),
        cell(value, "num"), cell(change(item), "num"), cell(compareButton(item.key)));
      return tr;
    });
    replaceRows($("top"), rows, JSON.stringify([top.items, state.key, state.tz, state.compare]),
      "No events in this window", 6);
  }

  function renderRising(rising) {
    shown.rising = rising;
    $("rising-range").textContent = formatRange(rising.start, rising.end);
    const rows = rising.items.map((item) => {
      const tr = document.createElement("tr");
      if (item.key === state.key) tr.className = "selected";
      // A key with nothing in its baseline is a breakout: a growth against zero (+70100%) says
      // nothing. Nor does one against a baseline older than the data held, which is made of zeros
      // that are not history (docs/queries.md, rising).
      // A short history first: with less data than the baseline, a key is not new, only unknown.
      const breakout = item.breakout && !item.baseline_partial;
      const growth = breakout ? "Breakout" : item.baseline_partial || item.growth_pct === null ? "–"
        : `${item.growth_pct >= 0 ? "+" : ""}${Math.round(item.growth_pct)}%`;
      const growthCell = cell(growth, breakout ? "num breakout" : "num");
      if (breakout) growthCell.title = "Nothing in the baseline windows: new, or back after all of them";
      else if (item.baseline_partial) growthCell.title = "Not enough history for a baseline yet";
      tr.append(cell(String(item.rank)), cell(keyButton(item.key)), cell(item.score.toFixed(2), "num"), growthCell,
        cell(compareButton(item.key)));
      return tr;
    });
    replaceRows($("rising"), rows, JSON.stringify([rising.items, state.key, state.compare]),
      "Nothing rising right now", 5);
    const note = $("rising-note");
    const notes = [];
    if (rising.baseline_partial) {
      notes.push(`Less history than the ${rising.baseline_windows} windows of the baseline: scores compare with what there is, growth is not shown.`);
    }
    if (rising.below_min_count) {
      notes.push(`${rising.below_min_count} more ${rising.below_min_count === 1 ? "key has" : "keys have"} events now, fewer than ${rising.min_count} each: too few to score.`);
    }
    note.hidden = notes.length === 0;
    note.textContent = notes.join(" ");
  }

  function renderJobs(jobs) {
    let lag = 0;
    const rows = jobs.jobs.map((job) => {
      const run = job.last_run;
      const seconds = run && run.finished ? ((new Date(run.finished) - new Date(run.started)) / 1000).toFixed(2) : "–";
      if (job.lag_seconds) lag = Math.max(lag, job.lag_seconds);
      const tr = document.createElement("tr");
      tr.append(cell(job.enabled ? job.job : `${job.job} (off)`), cell(run ? formatTime(run.started, true) : "never"),
        cell(run ? run.outcome : "–"), cell(seconds, "num"), cell(job.backlog === null ? "–" : String(job.backlog), "num"),
        cell(job.next_run ? formatTime(job.next_run) : "–"));
      return tr;
    });
    $("lag").textContent = `lag ${Math.round(lag)} s`;
    replaceRows($("jobs"), rows, JSON.stringify([jobs.jobs, state.tz]), "No jobs", 6);
  }

  // The interval "auto" stands for: the finest that draws the window in at most AUTO_POINTS points.
  function autoInterval(seconds) {
    const readable = (name) => intervalLimits[name] && seconds / intervalLimits[name].seconds <= AUTO_POINTS;
    return intervalOrder.find(readable) || intervalOrder[intervalOrder.length - 1] || "1m";
  }

  // The series request for the Window selector: the window ending with the bucket in progress, at the
  // chosen interval, or the finest one that can draw the whole window (a series has a point limit).
  function chartRange() {
    const seconds = WINDOW_SECONDS[state.window] || 3600;
    let interval = state.interval === "auto" ? autoInterval(seconds) : state.interval;
    const fits = (name) => intervalLimits[name] && seconds / intervalLimits[name].seconds <= intervalLimits[name].max_points;
    if (!fits(interval)) interval = intervalOrder.find(fits) || interval;
    const width = (intervalLimits[interval] ? intervalLimits[interval].seconds : 60) * 1000;
    const end = Math.ceil((Date.now() + 1) / width) * width;
    const start = Math.max(end - seconds * 1000, end - width * (intervalLimits[interval] || { max_points: 1440 }).max_points);
    return { interval, start: new Date(start).toISOString(), end: new Date(end).toISOString(), seconds };
  }

  // Each line is drawn solid up to the last closed bucket; the bucket in progress hangs off it dashed,
  // so a line that is still filling is not read as a fall.
  function splitOpen(values) {
    const closed = values.slice();
    const open = values.map(() => null);
    const last = values.length - 1;
    if (last >= 0) {
      closed[last] = null;
      open[last] = values[last];
      if (last >= 1) open[last - 1] = values[last - 1];
    }
    return [closed, open];
  }

  function draw(containerId, times, lines, range, yLabel) {
    const container = $(containerId);
    container.dataset.keys = lines.filter((line) => !line.extra).map((line) => line.label).join("\u241f");
    container.dataset.interval = range.interval;
    container.dataset.start = range.start;
    container.dataset.end = range.end;
    container.dataset.points = String(times.length);
    container.dataset.openBucket = times.length ? new Date(times[times.length - 1] * 1000).toISOString() : "";
    const entry = charts[containerId];
    if (!lines.length) {
      if (entry) entry.plot.destroy();
      delete charts[containerId];
      container.textContent = "";
      return;
    }
    const series = [{}];
    const data = [times];
    lines.forEach((line) => {
      const [closed, open] = line.split === false ? [line.values, line.values.map(() => null)] : splitOpen(line.values);
      series.push({ label: line.label, stroke: line.color, width: line.width || 2, dash: line.dash });
      series.push({ label: `${line.label} (in progress)`, stroke: line.color, width: line.width || 2, dash: [6, 4] });
      data.push(closed, open);
    });
    // What is drawn, for tests and tools: the canvas keeps no text.
    container.dataset.lines = JSON.stringify(lines.map((line) =>
      ({ label: line.label, color: line.color, width: line.width || 2, dash: line.dash || null })));
    container.dataset.openValues = JSON.stringify(lines.map((line) => line.values[line.values.length - 1] ?? null));
    container.dataset.values = JSON.stringify(lines.map((line) => line.values));
    container.dataset.yLabel = yLabel;
    const signature = JSON.stringify([series.map((one) => one.label), range.interval, state.tz, yLabel]);
    if (entry && entry.signature === signature) {
      entry.plot.setData(data);
      return;
    }
    if (entry) entry.plot.destroy();
    container.textContent = "";
    const plot = new uPlot({
      width: Math.max(280, container.clientWidth), height: containerId === "chart" ? 300 : 220,
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), state.tz),
      scales: { y: { range: (_u, _min, max) => [0, Math.max(1, max)] } },
      series,
      // Without the cursor's values the legend names the lines at once, instead of "--" until a hover.
      legend: { live: false },
      // uPlot's own time labels use a 12-hour clock; the tables use 24 hours, so the axis does too.
      axes: [{ values: (_u, splits, _axis, _space, step) => axisLabels(splits, step, container),
        incrs: X_STEPS.filter((step) => step >= (intervalLimits[range.interval] || { seconds: 60 }).seconds) },
      { label: yLabel }],
    }, data, container);
    // The legend names each line once: the dashed "in progress" parts share their line's colour.
    const rows = [...plot.root.querySelectorAll(".u-legend .u-series")];
    const offset = rows.length - (series.length - 1);  // 1 where the legend has a row for time
    series.forEach((_one, index) => {
      if (index > 0 && index % 2 === 0 && rows[index - 1 + offset]) rows[index - 1 + offset].style.display = "none";
    });
    charts[containerId] = { plot, signature };
  }

  function lineOf(body) {
    // One key answers in the plain shape; several keys, or compare, in {"series": [...]}.
    return body.series || [{ key: body.key, points: body.points }];
  }

  async function renderChart(topItems) {
    const keys = state.compare.length ? state.compare : topItems.slice(0, 5).map((item) => item.key);
    $("chart-title").textContent = state.compare.length ? "Series: compared keys" : "Series: top 5";
    renderCompared();
    const range = chartRange();
    const bucket = intervalLimits[range.interval] ? intervalLimits[range.interval].seconds : 60;
    let note = "";
    if (state.interval !== "auto" && range.interval !== state.interval) {
      note = `Shown at ${range.interval}: a ${state.window} window has too many ${state.interval} points for one chart.`;
    } else if (bucket > range.seconds) {
      note = `Each ${range.interval} point holds more than the ${state.window} window the lists rank: choose a finer interval, or auto.`;
    }
    showNote(note);
    if (!keys.length) {
      draw("chart", [], [], range, "");
      shown.chart = null;
    } else {
      const body = await api("v1/series", { event: state.event, key: keys, segment: state.segment,
        interval: range.interval, start: range.start, end: range.end });
      const found = lineOf(body);
      const times = found[0].points.map((point) => new Date(point.t).getTime() / 1000);
      const colors = colorsFor(found.map((line) => line.key));
      // The chart draws what the lists rank by: a ranking by users charts users.
      const measure = state.by;
      const lines = found.map((line) => ({
        label: line.key, color: colors.get(line.key), values: line.points.map((point) => point[measure]) }));
      draw("chart", times, lines, range, measure === "count" ? "events" : measure);
      shown.chart = { times, lines, measure, interval: range.interval };
    }
    $("chart").dataset.window = state.window;  // what the chart shows now: tests and tools read it
  }

  async function renderKeyView() {
    const view = $("key-view");
    view.hidden = !state.key;
    if (!state.key) return;
    $("key-title").textContent = `Key: ${state.key}`;
    const range = chartRange();
    const body = await api("v1/series", { event: state.event, key: state.key, segment: state.segment,
      interval: range.interval, start: range.start, end: range.end, compare: "previous" });
    const [line] = lineOf(body);
    if (line.key && line.key !== state.key) {
      // A key looked up as typed ("Umbrella") is shown as stored ("umbrella"), as the lists name it.
      state.key = line.key;
      saveState();
      $("key-title").textContent = `Key: ${state.key}`;
    }
    const times = line.points.map((point) => new Date(point.t).getTime() / 1000);
    draw("key-chart", times, [
      { label: state.key, color: colorsFor([state.key]).get(state.key), width: 3,
        values: line.points.map((point) => point.count) },
      { label: "previous period", color: "#8a8f99", width: 1, dash: [2, 3], split: false, extra: true,
        values: (line.previous || []).map((point) => point.count) },
      // Dashed and in a colour no key takes: where every event came from its own person, users equal
      // the count, and a solid line would hide the count's beneath it.
      { label: "users", color: "#5f6368", width: 2, dash: [5, 4], split: false, extra: true,
        values: line.points.map((point) => point.users) },
    ], range, "events · users");
    const ranks = await rankOverTime();
    const now = ranks[ranks.length - 1];
    $("key-stats").textContent = now && now.rank
      ? `Rank ${now.rank} by ${state.by} over the last ${state.window} · ${now.count.toLocaleString()} events` +
        (now.users === null ? "" : ` · ${now.users.toLocaleString()} users`)
      : `Not in the top 100 by ${state.by} over the last ${state.window}`;
    const rows = ranks.map((entry) => {
      const tr = document.createElement("tr");
      tr.append(cell(formatTime(entry.at, true)), cell(entry.rank ? String(entry.rank) : "–", "num"),
        cell(entry.rank ? entry.count.toLocaleString() : "–", "num"));
      return tr;
    });
    replaceRows($("key-ranks"), rows, JSON.stringify([ranks, state.tz]), "–", 3);
  }

  // The key's rank at 8 moments across the window, each over a window of the same width: 8 top lists
  // of 100, so they are read again at most once a minute.
  async function rankOverTime() {
    const signature = JSON.stringify([state.key, state.event, state.segment, state.window, state.by]);
    if (ranksCache.signature === signature && Date.now() - ranksCache.at < 60_000) return ranksCache.ranks;
    const seconds = WINDOW_SECONDS[state.window] || 3600;
    const now = Date.now();
    const moments = Array.from({ length: 8 }, (_, i) => new Date(now - (7 - i) * seconds * 1000 / 8).toISOString());
    const tops = await Promise.all(moments.map((at) => api("v1/top", { event: state.event, segment: state.segment,
      window: state.window, by: state.by, limit: 100, at })));
    const ranks = tops.map((top, i) => {
      const item = top.items.find((one) => one.key === state.key);
      return { at: moments[i], rank: item ? item.rank : null, count: item ? item.count : 0,
        users: item ? item.users : null };
    });
    ranksCache = { signature, at: Date.now(), ranks };
    return ranks;
  }

  function describeRule(rule) {
    const scope = `${rule.event}${rule.segment ? "/" + rule.segment : ""}, ${rule.window}, by ${rule.by}`;
    if (rule.condition === "rising") return `rising: ${rule.score || "zscore"} ≥ ${rule.min_score}, count ≥ ${rule.min_count} (${scope})`;
    if (rule.condition === "enters_top") return `enters the top ${rule.top} (${scope})`;
    return `${rule.key} crosses ${rule.threshold} (${scope})`;
  }

  async function renderAlerts() {
    const { rules } = await api("v1/alerts");
    const deliveries = await Promise.all(rules.map((rule) => api(`v1/alerts/${rule.id}/deliveries`)));
    const rows = rules.map((rule, i) => {
      const tr = document.createElement("tr");
      tr.dataset.rule = String(rule.id);
      const recent = deliveries[i].deliveries.slice(0, 5).map((delivery) => {
        const span = document.createElement("div");
        span.className = `status-${delivery.status}`;
        span.textContent = `${delivery.status}${delivery.test ? " (test)" : ""} · ${delivery.key || "–"} · ` +
          `${formatTime(delivery.created, true)} · ${delivery.attempts} attempt${delivery.attempts === 1 ? "" : "s"}`;
        return span;
      });
      const list = document.createElement("div");
      list.append(...(recent.length ? recent : ["none yet"]));
      const condition = document.createElement("div");
      condition.textContent = describeRule(rule);
      if (rule.last_error) {
        // One rule's failure is shown on that rule; the others go on being evaluated.
        const failing = document.createElement("div");
        failing.className = "rule-error";
        failing.textContent = `failing since ${formatTime(rule.last_error_at, true)}: ${rule.last_error}`;
        condition.append(failing);
        tr.classList.add("failing");
      }
      tr.append(cell(rule.name), cell(condition), cell(list));
      return tr;
    });
    replaceRows($("alerts"), rows, JSON.stringify([rules, deliveries, state.tz]), "No alert rules", 3);
  }

  async function loadDimensions() {
    const { events, intervals, interval_limits: limits, rankings } = await api("v1/dimensions");
    intervalOrder = intervals;
    // What a ranking may be by: the measures that rank, as the server defines them.
    if (!rankings.includes(state.by)) state.by = rankings[0];
    fillSelect($("by"), rankings.map((name) => [name, name[0].toUpperCase() + name.slice(1)]), state.by);
    intervalLimits = Object.fromEntries(limits.map((one) => [one.interval, one]));
    // The rollup levels are the intervals: the server's hierarchy decides the choices.
    if (state.interval !== "auto" && !intervals.includes(state.interval)) state.interval = "auto";
    const automatic = autoInterval(WINDOW_SECONDS[state.window] || 3600);
    fillSelect($("interval"), [["auto", `auto (${automatic})`], ...intervals.map((name) => [name, name])], state.interval);
    $("empty").hidden = events.length > 0;
    const names = events.map((item) => item.event);
    if (!names.includes(state.event)) state.event = names.includes("search") ? "search" : (names[0] || "");
    fillSelect($("event"), names.map((name) => [name, name]), state.event);
    const chosen = events.find((item) => item.event === state.event);
    const segments = chosen ? chosen.segments.filter((s) => s !== "") : [];
    if (state.segment && !segments.includes(state.segment)) state.segment = "";
    fillSelect($("segment"), [["", "all"], ...segments.map((s) => [s, s])], state.segment);
    return events.length > 0;
  }

  function fillSelect(select, options, value) {
    const signature = JSON.stringify(options);
    if (select.dataset.signature !== signature) {
      select.dataset.signature = signature;
      select.replaceChildren(...options.map(([optionValue, label]) => {
        const option = document.createElement("option");
        option.value = optionValue;
        option.textContent = label;
        return option;
      }));
    }
    select.value = value;
  }

  // CSV as spreadsheets read it (RFC 4180). A text cell that a spreadsheet would run as a formula
  // (=, +, -, @, a tab or a carriage return first) is kept as text with a leading apostrophe.
  function csvCell(value, isText) {
    if (value === null || value === undefined) return "";
    let text = String(value);
    if (isText && /^[=+\-@\t\r]/.test(text)) text = "'" + text;
    return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
  }

  function csvOf(header, rows, textColumns) {
    const lines = [header, ...rows].map((row, r) =>
      row.map((value, c) => csvCell(value, r === 0 || textColumns.includes(c))).join(","));
    return lines.join("\r\n") + "\r\n";
  }

  function download(name, text) {
    // A byte-order mark, so that Excel reads the keys as UTF-8 (Korean keys included).
    const url = URL.createObjectURL(new Blob(["\ufeff" + text], { type: "text/csv;charset=utf-8" }));
    const link = document.createElement("a");
    link.href = url;
    link.download = name;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  }

  function csvName(what) {
    const stamp = new Date().toISOString().slice(0, 16).replace(/[-:]/g, "");
    const parts = [what, state.event, state.segment, state.window, state.by].filter((part) => part);
    return `trend-${parts.join("-").replace(/[^\p{L}\p{N}._-]+/gu, "_")}-${stamp}Z.csv`;
  }

  function exportTop() {
    if (!shown.top) return;
    const rows = shown.top.items.map((item) => [item.rank, item.key, item.count, item.users,
      item.is_new ? "" : item.rank_change, item.is_new]);
    download(csvName("top"), csvOf(["rank", "key", "count", "users", "rank_change", "new"], rows, [1]));
  }

  function exportRising() {
    if (!shown.rising) return;
    const rows = shown.rising.items.map((item) => [item.rank, item.key, item.count, item.users, item.baseline,
      item.score, item.growth_pct, item.breakout]);
    download(csvName("rising"), csvOf(["rank", "key", "count", "users", "baseline", "score", "growth_pct", "breakout"],
      rows, [1]));
  }

  // One row per bucket (its start, in UTC), one column per key; the last row is the bucket in progress.
  function exportChart() {
    const chart = shown.chart;
    if (!chart) return;
    const header = ["bucket_start", ...chart.lines.map((line) => line.label)];
    const rows = chart.times.map((ts, i) => [new Date(ts * 1000).toISOString(), ...chart.lines.map((line) => line.values[i])]);
    // The header names the keys; the cells below are numbers.
    download(csvName(`series-${chart.measure}-${chart.interval}`), csvOf(header, rows, []));
  }

  function setLoading(on) {
    $("loading").hidden = !on;
    document.body.setAttribute("aria-busy", on ? "true" : "false");
  }

  // byUser: a choice was changed, so say that the page is loading until the new answers are drawn.
  async function refresh(byUser) {
    clearTimeout(timer);
    if (inFlight) inFlight.abort();
    const controller = new AbortController();
    inFlight = controller;
    if (byUser === true) setLoading(true);
    try {
      // Once an event is chosen, the choices and the answers load side by side: one round trip, not two.
      const known = state.event !== "";
      const choices = loadDimensions();
      const hasEvents = known || await choices;
      const params = { event: state.event, segment: state.segment, window: state.window, by: state.by };
      const none = { items: [], start: null, end: null };
      const topAnswer = hasEvents ? api("v1/top", params) : Promise.resolve(none);
      // The chart waits only for the top list (its keys): rising, the jobs and the choices load beside it.
      const rest = Promise.all([hasEvents ? api("v1/rising", params) : none, api("v1/jobs"), choices]);
      rest.catch(() => {});  // awaited below: an early failure is reported there, once
      const top = await topAnswer;
      renderTop(top);
      await renderChart(top.items);
      if (byUser === true) setLoading(false);
      const [rising, jobs] = await rest;
      renderRising(rising);
      renderJobs(jobs);
      await Promise.all([renderKeyView(), renderAlerts()]);
      $("error").hidden = true;
      $("auth").hidden = true;
      $("updated").textContent = formatTime(new Date().toISOString());
    } catch (error) {
      if (controller.signal.aborted) return;  // superseded: the newer refresh draws, and says so
      const asked = error instanceof AuthError && !sessionStorage.getItem(KEY_STORE);
      // Before any key was given, the prompt says all there is to say; a key refused is an error.
      const kept = $("updated").textContent !== "never" ? "Showing the last data; retrying." : "Retrying.";
      $("error").textContent = `Could not refresh: ${error.message}. ${kept}`;
      $("error").hidden = asked;
      if (error instanceof AuthError) $("auth").hidden = false;
    } finally {
      if (inFlight === controller) {
        inFlight = null;
        setLoading(false);
        timer = setTimeout(refresh, refreshSeconds * 1000);
      }
    }
  }

  function setUp() {
    $("every").textContent = String(refreshSeconds);
    const zones = ZONES.includes(browserZone) ? ZONES : [browserZone, ...ZONES];
    if (!zones.includes(state.tz)) zones.push(state.tz);
    fillSelect($("tz"), zones.map((zone) => [zone, zone]), state.tz);
    $("window").value = state.window;
    $("interval").value = state.interval;
    $("by").value = state.by;
    for (const field of ["event", "segment", "window", "interval", "by", "tz"]) {
      $(field).addEventListener("change", (e) => {
        state[field] = e.target.value;
        if (field === "event") { state.key = ""; state.compare = []; }
        saveState();
        refresh(true);
      });
    }
    window.addEventListener("resize", () => {
      for (const [id, entry] of Object.entries(charts)) {
        entry.plot.setSize({ width: Math.max(280, $(id).clientWidth), height: id === "chart" ? 300 : 220 });
      }
    });
    $("key-close").addEventListener("click", () => {
      state.key = "";
      saveState();
      refresh(true);
    });
    $("lookup").addEventListener("submit", (e) => {
      e.preventDefault();
      const key = $("lookup-key").value.trim();
      if (!key) return;
      state.key = key;
      saveState();
      refresh(true).then(() => { if (state.key) $("key-view").scrollIntoView({ block: "start" }); });
    });
    $("top-csv").addEventListener("click", exportTop);
    $("rising-csv").addEventListener("click", exportRising);
    $("chart-csv").addEventListener("click", exportChart);
    $("auth").addEventListener("submit", (e) => {
      e.preventDefault();
      sessionStorage.setItem(KEY_STORE, $("auth-key").value);
      $("auth-key").value = "";
      refresh(true);
    });
    saveState();
    refresh(true);
  }

  setUp();
})();
