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
  const FIELDS = ["event", "segment", "window", "interval", "by", "tz", "key"];
  const state = {
    event: query.get("event") || "", segment: query.get("segment") || "", window: query.get("window") || "1h",
    interval: query.get("interval") || "1m", tz: query.get("tz") || browserZone, key: query.get("key") || "",
    by: query.get("by") === "users" ? "users" : "count",
  };
  const refreshSeconds = Math.max(1, Number(query.get("refresh")) || 5);
  let chart = null;
  let chartSignature = "";
  let timer = null;

  function saveState() {
    const next = new URLSearchParams();
    for (const field of FIELDS) if (state[field]) next.set(field, state[field]);
    if (query.has("refresh")) next.set("refresh", String(refreshSeconds));
    history.replaceState(null, "", "?" + next.toString());
  }

  async function api(path, params) {
    const url = new URL(path, document.baseURI);  // relative, so the page works under any mount prefix
    for (const [name, value] of Object.entries(params || {})) {
      if (value !== "" && value !== null && value !== undefined) url.searchParams.set(name, value);
    }
    const response = await fetch(url, { headers: { Accept: "application/json" } });
    let body = null;
    try { body = await response.json(); } catch (_) { body = null; }
    if (!response.ok) {
      const message = body && body.error ? body.error.message : `HTTP ${response.status}`;
      throw new Error(`${url.pathname}: ${message}`);
    }
    return body;
  }

  function formatTime(iso, withDate) {
    if (!iso) return "–";
    const options = { timeZone: state.tz, hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" };
    if (withDate) Object.assign(options, { month: "short", day: "numeric" });
    return new Intl.DateTimeFormat("en-GB", options).format(new Date(iso));
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

  function keyButton(key) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "key";
    button.textContent = key;
    button.dataset.key = key;
    button.setAttribute("aria-pressed", String(state.key === key));
    button.addEventListener("click", () => {
      state.key = state.key === key ? "" : key;
      saveState();
      refresh();
    });
    return button;
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
    $("top-range").textContent = formatRange(top.start, top.end);
    const rows = top.items.map((item) => {
      const tr = document.createElement("tr");
      if (item.key === state.key) tr.className = "selected";
      // users is null where it cannot be known (buckets from before users were counted).
      const users = item.users === null ? "–" : item.users.toLocaleString();
      tr.append(cell(String(item.rank)), cell(keyButton(item.key)), cell(item.count.toLocaleString(), "num"),
        cell(users, "num"), cell(change(item), "num"));
      return tr;
    });
    replaceRows($("top"), rows, JSON.stringify([top.items, state.key, state.tz]), "No events in this window", 5);
  }

  function renderRising(rising) {
    $("rising-range").textContent = formatRange(rising.start, rising.end);
    const rows = rising.items.map((item) => {
      const tr = document.createElement("tr");
      if (item.key === state.key) tr.className = "selected";
      // A baseline older than the data held is made of zeros that are not history: a growth
      // against it (+1836400%) says nothing, so it is not shown (docs/queries.md, rising).
      const growth = item.baseline_partial ? "–"
        : `${item.growth_pct >= 0 ? "+" : ""}${Math.round(item.growth_pct)}%`;
      const growthCell = cell(growth, "num");
      if (item.baseline_partial) growthCell.title = "Not enough history for a baseline yet";
      tr.append(cell(String(item.rank)), cell(keyButton(item.key)), cell(item.score.toFixed(2), "num"), growthCell);
      return tr;
    });
    replaceRows($("rising"), rows, JSON.stringify([rising.items, state.key]), "Nothing rising right now", 4);
    const note = $("rising-note");
    note.hidden = !rising.baseline_partial;
    note.textContent = rising.baseline_partial
      ? `Less history than the ${rising.baseline_windows} windows of the baseline: scores compare with what there is, growth is not shown.`
      : "";
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

  async function renderChart(topItems) {
    const keys = state.key ? [state.key] : topItems.slice(0, 5).map((item) => item.key);
    $("chart-title").textContent = state.key ? `Series: ${state.key}` : "Series: top 5";
    const container = $("chart");
    container.dataset.keys = keys.join("\u241f");
    if (!keys.length) {
      if (chart) { chart.destroy(); chart = null; chartSignature = ""; }
      container.textContent = "";
      return;
    }
    const series = await Promise.all(keys.map((key) => api("v1/series", {
      event: state.event, key, segment: state.segment, interval: state.interval })));
    const times = series[0].points.map((point) => new Date(point.t).getTime() / 1000);
    const data = [times, ...series.map((s) => s.points.map((point) => point.count))];
    const signature = JSON.stringify([keys, state.interval, state.tz]);
    if (chart && signature === chartSignature) {
      chart.setData(data);
      return;
    }
    if (chart) chart.destroy();
    container.textContent = "";
    chartSignature = signature;
    chart = new uPlot({
      width: Math.max(280, container.clientWidth), height: 300,
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), state.tz),
      scales: { y: { range: (_u, _min, max) => [0, Math.max(1, max)] } },
      series: [{}, ...keys.map((key, i) => ({ label: key, stroke: COLORS[i % COLORS.length], width: 2 }))],
      // Without the cursor's values the legend names the lines at once, instead of "--" until a hover.
      legend: { live: false },
      // uPlot's own time labels use a 12-hour clock; the tables use 24 hours, so the axis does too.
      axes: [{ values: (_u, splits, _axis, _space, step) => axisLabels(splits, step, container) }, { label: "count" }],
    }, data, container);
  }

  async function loadDimensions() {
    const { events, intervals } = await api("v1/dimensions");
    // The rollup levels are the intervals: the server's hierarchy decides the choices.
    if (!intervals.includes(state.interval)) state.interval = intervals[0];
    fillSelect($("interval"), intervals.map((name) => [name, name]), state.interval);
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

  async function refresh() {
    clearTimeout(timer);
    try {
      const hasEvents = await loadDimensions();
      const params = { event: state.event, segment: state.segment, window: state.window, by: state.by };
      const [top, rising, jobs] = hasEvents
        ? await Promise.all([api("v1/top", params), api("v1/rising", params), api("v1/jobs")])
        : [{ items: [], start: null, end: null }, { items: [], start: null, end: null }, await api("v1/jobs")];
      renderTop(top);
      renderRising(rising);
      renderJobs(jobs);
      await renderChart(top.items);
      $("error").hidden = true;
      $("updated").textContent = formatTime(new Date().toISOString());
    } catch (error) {
      $("error").textContent = `Could not refresh: ${error.message}. Showing the last data; retrying.`;
      $("error").hidden = false;
    } finally {
      timer = setTimeout(refresh, refreshSeconds * 1000);
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
        if (field === "event") state.key = "";
        saveState();
        refresh();
      });
    }
    window.addEventListener("resize", () => {
      if (chart) chart.setSize({ width: Math.max(280, $("chart").clientWidth), height: 300 });
    });
    saveState();
    refresh();
  }

  setUp();
})();
