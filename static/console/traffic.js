// The instance's Traffic tab: requests per minute (hour) and p95 latency, drawn with the vendored
// uPlot (static/vendor/uplot/) from <script type="application/json" id="traffic-chart-data">
// (Django's json_script: no inline script). live.js swaps in new figures every few seconds; on
// its `live:updated` event the charts take the new data (setData) instead of being rebuilt.
"use strict";

(function () {
  const charts = new Map(); // key → [box, uPlot]

  function read() {
    const source = document.getElementById("traffic-chart-data");
    return source ? JSON.parse(source.textContent) : null;
  }

  function label(data, seconds) {
    const d = new Date(seconds * 1000);
    return data.step >= 3600
      ? d.toLocaleDateString(undefined, { month: "short", day: "numeric", timeZone: "UTC" })
      : d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", timeZone: "UTC" });
  }

  function describe(box, key, data) {
    const values = (data[key] || []).filter((v) => v !== null);
    const text = key === "requests"
      ? `${values.reduce((s, v) => s + v, 0)} requests over ${data.t.length} ${data.step >= 3600 ? "hours" : "minutes"}`
      : values.length ? `p95 latency from ${Math.min(...values)} to ${Math.max(...values)} ms` : "no requests";
    box.setAttribute("aria-label", `${box.dataset.chartLabel || key}: ${text}. The totals are in the table above.`);
  }

  function draw() {
    const data = read();
    if (!data || typeof window.uPlot !== "function") return;
    document.querySelectorAll("[data-traffic-chart]").forEach((box) => {
      const key = box.dataset.trafficChart;
      const bars = key === "requests";
      const opts = {
        width: Math.max(box.clientWidth, 200),
        height: 160,
        legend: { show: false },
        cursor: { drag: { x: false, y: false } },
        scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(max || 0, 1) * 1.1] } },
        axes: [{ space: 60, values: (u, splits) => splits.map((s) => label(data, s)) }, { size: 48 }],
        series: [
          {},
          {
            label: box.dataset.chartLabel || key,
            stroke: bars ? "#2f5bea" : "#b45309",
            fill: bars ? "rgba(47, 91, 234, 0.35)" : undefined,
            width: bars ? 1 : 2,
            spanGaps: false,
            points: { show: !bars, size: 3 },
            paths: bars && window.uPlot.paths && window.uPlot.paths.bars ? window.uPlot.paths.bars({ size: [0.8, 20] }) : undefined,
          },
        ],
      };
      box.replaceChildren();
      box.setAttribute("role", "img");
      describe(box, key, data);
      charts.set(key, [box, new window.uPlot(opts, [data.t, data[key]], box)]);
    });
    let pending = null;
    window.addEventListener("resize", () => {
      clearTimeout(pending);
      pending = setTimeout(() => charts.forEach(([box, chart]) => chart.setSize({ width: Math.max(box.clientWidth, 200), height: 160 })), 150);
    });
    document.addEventListener("live:updated", () => {
      const fresh = read();
      if (!fresh) return;
      charts.forEach(([box, chart], key) => {
        chart.setData([fresh.t, fresh[key]]);
        describe(box, key, fresh);
      });
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", draw);
  else draw();
})();
