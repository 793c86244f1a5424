// The dashboard page: draws each snapshot the server pushes on /events (server-sent events).
// Text goes in with textContent only, never as HTML: the snapshot holds counts and names, and
// a brand name is whatever a producer wrote.
"use strict";

const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31"];
const ALERT = "#c62828";

const utcTime = (ms, seconds = true) => new Date(ms).toISOString().slice(11, seconds ? 19 : 16);
const pct = (x) => (x == null ? "–" : `${(x * 100).toFixed(0)}%`);
const ms = (x) => (x == null ? "–" : x.toFixed(0));
const money = (x) => (x == null ? "–" : x.toFixed(6));

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

function setText(id, value) {
  document.getElementById(id).textContent = String(value);
}

// Replaces a table's body with one row per item, or the empty message.
function fillTable(id, items, row, empty) {
  const body = document.querySelector(`#${id} tbody`);
  const rows = items.map(row);
  if (!rows.length && empty) rows.push(el("tr", { class: "empty" }, el("td", { colspan: String(body.closest("table").tHead.rows[0].cells.length) }, empty)));
  body.replaceChildren(...rows);
}

function fillList(id, items, item, empty) {
  const list = document.getElementById(id);
  const entries = items.map(item);
  if (!entries.length) entries.push(el("li", { class: "empty" }, empty));
  list.replaceChildren(...entries);
}

function cell(value, cls) {
  return el("td", cls ? { class: cls } : {}, value);
}

// --- charts -------------------------------------------------------------------------------------

const countAxis = { x: { beginAtZero: true, ticks: { precision: 0 } } };

const timeAxis = (seconds) => ({
  type: "linear",
  ticks: { callback: (v) => utcTime(v, seconds), maxTicksLimit: 8 },
});

function makeCharts() {
  Chart.defaults.animation = false;
  Chart.defaults.maintainAspectRatio = false;
  Chart.defaults.font.size = 11;
  return {
    brand: new Chart(document.getElementById("brand-chart"), {
      type: "line",
      data: { datasets: [] },
      options: {
        parsing: false,
        scales: {
          x: timeAxis(false),
          y: { min: 0, max: 100, title: { display: true, text: "negative %" } },
        },
        layout: { padding: { top: 14 } },
        plugins: { legend: { position: "right" } },
      },
    }),
    segments: new Chart(document.getElementById("segment-chart"), {
      type: "bar",
      data: { labels: [], datasets: [{ label: "population", data: [], backgroundColor: PALETTE[0] }] },
      options: { indexAxis: "y", scales: countAxis, plugins: { legend: { display: false } } },
    }),
    spend: new Chart(document.getElementById("spend-chart"), {
      type: "bar",
      data: {
        labels: [],
        datasets: [
          { label: "booked today", data: [], backgroundColor: PALETTE[2] },
          { label: "pacing allows by now", data: [], backgroundColor: "#c8ccd2" },
        ],
      },
      // log scale: a day's budget and one auction's price differ by five orders of magnitude
      options: { scales: { y: { type: "logarithmic", title: { display: true, text: "USD (log scale)" } } } },
    }),
    intents: new Chart(document.getElementById("intent-chart"), {
      type: "bar",
      data: {
        labels: [],
        datasets: [{ label: "messages", data: [], backgroundColor: PALETTE[3] }],
      },
      options: { indexAxis: "y", scales: countAxis, plugins: { legend: { display: false } } },
    }),
    throughput: new Chart(document.getElementById("throughput-chart"), {
      type: "line",
      data: {
        datasets: [
          { label: "inputs/s", data: [], borderColor: PALETTE[0], backgroundColor: PALETTE[0] },
          { label: "outputs/s", data: [], borderColor: PALETTE[1], backgroundColor: PALETTE[1] },
        ],
      },
      options: { parsing: false, scales: { x: timeAxis(true), y: { beginAtZero: true, title: { display: true, text: "records/s" } } } },
    }),
    latency: new Chart(document.getElementById("latency-chart"), {
      type: "line",
      data: {
        datasets: [
          { label: "p50 ms", data: [], borderColor: PALETTE[2], backgroundColor: PALETTE[2], spanGaps: true },
          { label: "p99 ms", data: [], borderColor: ALERT, backgroundColor: ALERT, spanGaps: true },
        ],
      },
      options: { parsing: false, scales: { x: timeAxis(true), y: { beginAtZero: true, title: { display: true, text: "end-to-end ms" } } } },
    }),
  };
}

function drawBrands(chart, brands) {
  const datasets = brands.series.map((s, i) => ({
    label: s.brand,
    data: s.points.map((p) => ({ x: p.t, y: p.share_negative * 100 })),
    borderColor: PALETTE[i % PALETTE.length],
    backgroundColor: PALETTE[i % PALETTE.length],
    pointRadius: 2,
  }));
  datasets.push({
    type: "scatter",
    label: "alert",
    data: brands.alerts.map((a) => ({ x: a.window_start, y: a.share_negative * 100 })),
    pointStyle: "triangle",
    pointRadius: 9,
    clip: false, // a 100% window sits on the chart's top edge
    borderColor: ALERT,
    backgroundColor: ALERT,
  });
  chart.data.datasets = datasets;
  chart.update();
}

function drawBars(chart, labels, ...series) {
  chart.data.labels = labels;
  series.forEach((values, i) => {
    chart.data.datasets[i].data = values;
  });
  chart.update();
}

// Time series over the server's buckets; the x axis spans them all, so one bucket is not
// stretched over an arbitrary range.
function drawSeries(chart, points, bucketMs, ...keys) {
  keys.forEach((key, i) => {
    chart.data.datasets[i].data = points.filter((p) => p[key] != null).map((p) => ({ x: p.t, y: p[key] }));
  });
  const x = chart.options.scales.x;
  x.min = points.length ? points[0].t : undefined;
  x.max = points.length ? points[points.length - 1].t + bucketMs : undefined;
  chart.update();
}

// --- one snapshot -------------------------------------------------------------------------------

function render(charts, s) {
  setText("updated", `${utcTime(s.generated_at)} UTC`);
  setText("records-read", s.health.records_read);

  // brands
  drawBrands(charts.brand, s.brands);
  setText("alert-count", s.brands.alert_count);
  fillList(
    "alerts",
    s.brands.alerts,
    (a) =>
      el(
        "li",
        { "data-brand": a.brand },
        el("span", { class: "what" }, `${a.brand} alert`),
        ` window ${utcTime(a.window_start, false)} UTC: ${pct(a.share_negative)} negative vs baseline ${pct(a.baseline_share_negative)} (n=${a.volume})`,
      ),
    "no alerts",
  );

  // segments
  const seg = s.segments;
  setText("segment-users", seg.users);
  drawBars(charts.segments, seg.rows.map((r) => r.segment), seg.rows.map((r) => r.population));
  fillTable(
    "segments",
    seg.rows,
    (r) => el("tr", { "data-segment": r.segment }, cell(r.segment), cell(r.population, "num population"), cell(r.entered, "num entered"), cell(r.exited, "num exited")),
    "no segment updates yet",
  );
  fillList(
    "segment-changes",
    seg.recent,
    (c) =>
      el(
        "li",
        {},
        `${utcTime(c.t)} v${c.version} `,
        ...c.entered.map((x) => el("span", { class: "entered" }, `+${x} `)),
        ...c.exited.map((x) => el("span", { class: "exited" }, `−${x} `)),
      ),
    "none yet",
  );

  // campaigns
  const camp = s.campaigns;
  setText("bids", camp.bids);
  setText("no-bids", camp.no_bids);
  drawBars(charts.spend, camp.rows.map((r) => r.campaign), camp.rows.map((r) => r.spent_today), camp.rows.map((r) => r.pacing_allowed));
  // In the demo no exchange calls the notice URLs: nothing is billed, and the page says so.
  document.getElementById("billing-note").hidden = camp.rows.some((r) => r.outcomes_today.billed > 0);
  fillTable("campaigns", camp.rows, (r) =>
    el(
      "tr",
      { "data-campaign": r.campaign },
      cell(r.campaign),
      cell(money(r.spent_today), "num spent"),
      cell(money(r.pacing_allowed), "num allowed"),
      cell(r.pace == null ? "–" : `${(r.pace * 100).toFixed(2)}%`, "num pace"),
      cell(money(r.bid_value_today), "num bid-value"),
    ),
  );
  fillTable("outcomes", camp.rows, (r) =>
    el(
      "tr",
      { "data-campaign": r.campaign },
      cell(r.campaign),
      cell(r.bids_today, "num bids"),
      ...["won", "billed", "lost", "expired"].map((k) => cell(r.outcomes_today[k], `num ${k}`)),
    ),
  );
  fillTable(
    "nbr-reasons",
    camp.no_bid_reasons,
    (r) => el("tr", { "data-nbr": String(r.nbr) }, cell(r.nbr), cell(r.name), cell(r.count, "count")),
    "no no-bids yet",
  );

  // customer service
  const cs = s.cs;
  setText("cs-replies", cs.replies);
  setText("cs-handoffs", cs.handoffs);
  drawBars(charts.intents, cs.intents.map((r) => r.intent), cs.intents.map((r) => r.count));
  fillTable("queues", cs.queues, (r) => el("tr", { "data-queue": r.queue }, cell(r.queue), cell(r.count, "count")), "no hand-offs yet");

  // health
  const h = s.health;
  setText("lag-total", h.lag.total == null ? "–" : h.lag.total);
  setText("dlq-total", h.dead_letters.total);
  setText("dropped-duplicates", h.dropped.duplicates);
  setText("dropped-stale", h.dropped.stale_segment_versions);
  setText("dropped-undecodable", h.dropped.undecodable);
  drawSeries(charts.throughput, h.throughput, h.bucket_ms, "inputs_per_s", "outputs_per_s");
  drawSeries(charts.latency, h.throughput, h.bucket_ms, "p50_ms", "p99_ms");
  fillTable("latency", h.latency, (r) => el("tr", { "data-output": r.output }, cell(r.path), cell(r.samples, "num samples"), cell(ms(r.p50_ms), "num"), cell(ms(r.p99_ms), "num")));
  fillTable("lag", h.lag.topics, (r) => el("tr", { "data-topic": r.topic }, cell(r.topic), cell(r.lag, "count")));
  fillTable("dlq-reasons", h.dead_letters.by_reason, (r) => el("tr", { "data-reason": r.reason }, cell(r.reason), cell(r.count, "count")), "none");
  fillTable("dlq-topics", h.dead_letters.rows, (r) => el("tr", {}, cell(r.topic), cell(r.reason), cell(r.count, "count")));
}

function connect(charts) {
  const status = document.getElementById("status");
  const source = new EventSource("/events");
  source.onopen = () => {
    status.textContent = "live";
    status.className = "status live";
  };
  source.onmessage = (event) => render(charts, JSON.parse(event.data));
  source.onerror = () => {
    status.textContent = "reconnecting";
    status.className = "status reconnecting";
  };
}

document.addEventListener("DOMContentLoaded", () => connect(makeCharts()));
