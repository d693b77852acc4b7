// The dashboard's own script: the CSRF header for htmx requests and the charts.
// Loaded from the package like everything else; no inline script is needed.
"use strict";

document.addEventListener("htmx:configRequest", (event) => {
  const meta = document.querySelector('meta[name="csrf-token"]');
  if (meta) event.detail.headers["X-CSRF-Token"] = meta.content;
});

function drawCharts() {
  for (const holder of document.querySelectorAll("[data-chart]")) {
    if (typeof uPlot === "undefined") continue;
    const data = JSON.parse(holder.dataset.chart);
    // Nothing to draw: the page's own words stay.
    if (!data.x.length) continue;
    holder.textContent = "";
    // One colour per class (human, machine, unknown); clicks dashed beside solid opens.
    const colours = { human: "#15803d", machine: "#6b7280", unknown: "#c2410c" };
    const names = data.series.map(([name]) => name);
    const opts = {
      width: Math.max(320, holder.clientWidth - 16),
      height: 280,
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(2, max)] } },
      series: [{}].concat(
        names.map((name) => ({
          label: name,
          stroke: colours[name.split(" ")[1]] || "#1f5f8b",
          dash: name.startsWith("clicks") ? [6, 4] : undefined,
          width: 2,
        }))
      ),
      axes: [{}, { label: "per hour" }],
    };
    // Hours on the axis in the workspace's time zone, not the browser's.
    const zone = holder.dataset.tz;
    if (zone) opts.tzDate = (ts) => uPlot.tzDate(new Date(ts * 1000), zone);
    holder.setAttribute("data-series", names.join(","));
    new uPlot(opts, [data.x].concat(data.series.map(([, values]) => values)), holder);
  }
}

document.addEventListener("DOMContentLoaded", drawCharts);
// Polled fragments bring a fresh chart holder and data: draw them again.
document.addEventListener("htmx:afterSettle", drawCharts);
