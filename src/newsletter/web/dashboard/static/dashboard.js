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
    holder.textContent = "";
    if (!data.hours.length) {
      holder.textContent = "No opens or clicks yet.";
      continue;
    }
    const xs = data.hours.map((h) => Date.parse(h + ":00Z") / 1000);
    const colours = ["#1f5f8b", "#c2410c", "#15803d", "#7c3aed", "#a16207", "#be123c"];
    const names = Object.keys(data.series);
    const opts = {
      width: Math.max(320, holder.clientWidth - 16),
      height: 280,
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(2, max)] } },
      series: [{}].concat(
        names.map((name, i) => ({ label: name, stroke: colours[i % colours.length], width: 2 }))
      ),
      axes: [{}, { label: "per hour" }],
    };
    // Hours on the axis in the workspace's time zone, not the browser's.
    const zone = holder.dataset.tz;
    if (zone) opts.tzDate = (ts) => uPlot.tzDate(new Date(ts * 1000), zone);
    holder.setAttribute("data-series", names.join(","));
    new uPlot(opts, [xs].concat(names.map((n) => data.series[n])), holder);
  }
}

document.addEventListener("DOMContentLoaded", drawCharts);
// Polled fragments bring a fresh chart holder and data: draw them again.
document.addEventListener("htmx:afterSettle", drawCharts);
