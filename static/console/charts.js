// The Billing page's usage charts: instance-hours, task executions, agent tokens and their cost per UTC day, drawn with
// the vendored uPlot (static/vendor/uplot/) from the numbers the server put in
// <script type="application/json" id="usage-chart-data"> (Django's json_script: no inline
// script). The table under the charts holds the same numbers, for screen readers and without JS.
"use strict";

(function () {
  function draw() {
    const source = document.getElementById("usage-chart-data");
    if (!source || typeof window.uPlot !== "function") return;
    const data = JSON.parse(source.textContent);
    const charts = [];
    document.querySelectorAll("[data-chart]").forEach((box) => {
      const key = box.dataset.chart;
      const values = data[key] || [];
      const bars = key === "executions" || key === "tokens";
      const stroke = bars ? "#2f5bea" : "#1f8a4c";
      const fill = bars ? "rgba(47, 91, 234, 0.35)" : "rgba(31, 138, 76, 0.15)";
      const opts = {
        width: Math.max(box.clientWidth, 200),
        height: 160,
        legend: { show: false },
        cursor: { drag: { x: false, y: false } },
        scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(max, bars ? 1 : 0.01) * 1.1] } },
        axes: [
          { space: 60, values: (u, splits) => splits.map((s) => new Date(s * 1000).toLocaleDateString(undefined, { month: "short", day: "numeric", timeZone: "UTC" })) },
          { size: 44 },
        ],
        series: [
          {},
          {
            label: box.dataset.chartLabel || key,
            stroke,
            fill,
            width: bars ? 1 : 2,
            points: { show: false },
            paths: bars && window.uPlot.paths && window.uPlot.paths.bars ? window.uPlot.paths.bars({ size: [0.7, 40] }) : undefined,
          },
        ],
      };
      box.replaceChildren();
      box.setAttribute("role", "img");
      const total = values.reduce((sum, v) => sum + v, 0);
      box.setAttribute("aria-label", `${box.dataset.chartLabel || key} per day over ${values.length} days: ${Math.round(total * 1000) / 1000} in all. The table below lists each day.`);
      charts.push([box, new window.uPlot(opts, [data.t, values], box)]);
    });
    let pending = null;
    window.addEventListener("resize", () => {
      clearTimeout(pending);
      pending = setTimeout(() => charts.forEach(([box, chart]) => chart.setSize({ width: Math.max(box.clientWidth, 200), height: 160 })), 150);
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", draw);
  else draw();
})();
