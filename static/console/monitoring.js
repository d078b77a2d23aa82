// The Monitoring tab's charts: CPU % and resident memory of the instance over the chosen window,
// drawn with the vendored uPlot (static/vendor/uplot/) from the numbers the server put in
// <script type="application/json" id="stats-chart-data"> (Django's json_script: no inline script).
// The region is live (static/console/live.js): on `live:updated` the charts take the new numbers.
// The table under the charts holds the same numbers, for screen readers and without JS.
"use strict";

(function () {
  const charts = [];

  function data() {
    const source = document.getElementById("stats-chart-data");
    return source ? JSON.parse(source.textContent) : null;
  }

  function series(numbers, key) {
    return [numbers.t || [], numbers[key] || []];
  }

  function describe(box, values) {
    const known = values.filter((v) => v !== null);
    const last = known.length ? known[known.length - 1] : null;
    box.setAttribute("aria-label", `${box.dataset.chartLabel} over ${values.length} points` + (last === null ? "" : `, latest ${last}`) + ". The table below lists the latest points.");
  }

  function draw() {
    const numbers = data();
    if (!numbers || typeof window.uPlot !== "function") return;
    document.querySelectorAll("[data-stats-chart]").forEach((box) => {
      const key = box.dataset.statsChart;
      const percent = key === "cpu_percent";
      const opts = {
        width: Math.max(box.clientWidth, 200),
        height: 160,
        legend: { show: false },
        cursor: { drag: { x: false, y: false } },
        scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(max || 0, percent ? 10 : 1) * 1.1] } },
        axes: [
          { space: 60, values: (u, splits) => splits.map((s) => new Date(s * 1000).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", timeZone: "UTC" })) },
          { size: 48 },
        ],
        series: [{}, { label: box.dataset.chartLabel || key, stroke: percent ? "#2f5bea" : "#1f8a4c", fill: percent ? "rgba(47, 91, 234, 0.15)" : "rgba(31, 138, 76, 0.15)", width: 2, points: { show: false }, spanGaps: false }],
      };
      box.replaceChildren();
      box.setAttribute("role", "img");
      describe(box, numbers[key] || []);
      charts.push([box, key, new window.uPlot(opts, series(numbers, key), box)]);
    });
  }

  function update() {
    const numbers = data();
    if (!numbers) return;
    charts.forEach(([box, key, chart]) => {
      chart.setData(series(numbers, key));
      describe(box, numbers[key] || []);
    });
  }

  function init() {
    draw();
    document.addEventListener("live:updated", update);
    let pending = null;
    window.addEventListener("resize", () => {
      clearTimeout(pending);
      pending = setTimeout(() => charts.forEach(([box, , chart]) => chart.setSize({ width: Math.max(box.clientWidth, 200), height: 160 })), 150);
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
