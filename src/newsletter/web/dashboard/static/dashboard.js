// The dashboard's own script: the CSRF header for htmx requests and the charts.
// Loaded from the package like everything else; no inline script is needed.
"use strict";

document.addEventListener("htmx:configRequest", (event) => {
  const meta = document.querySelector('meta[name="csrf-token"]');
  if (meta) event.detail.headers["X-CSRF-Token"] = meta.content;
});

// Each line its own colour and its own dash, so it is told apart without colour too.
// Colours from the Okabe-Ito palette (safe for red-green colour blindness), each at least
// 3:1 against the white chart; a dash pattern per line, the people's opens solid.
const LINES = {
  "opens human": { stroke: "#0072B2", dash: [], marker: "solid" },
  "opens machine": { stroke: "#000000", dash: [2, 4], marker: "dotted" },
  "opens unknown": { stroke: "#009E73", dash: [8, 3, 2, 3], marker: "dashed" },
  "clicks human": { stroke: "#D55E00", dash: [12, 5], marker: "dashed" },
  "clicks machine": { stroke: "#6E6E6E", dash: [2, 3, 2, 3, 8, 3], marker: "dotted" },
  "clicks unknown": { stroke: "#CC79A7", dash: [16, 4, 4, 4], marker: "double" },
};

function drawCharts() {
  for (const holder of document.querySelectorAll("[data-chart]")) {
    if (typeof uPlot === "undefined") continue;
    const data = JSON.parse(holder.dataset.chart);
    // Nothing to draw: the page's own words stay.
    if (!data.x.length) continue;
    holder.textContent = "";
    const names = data.series.map(([name]) => name);
    // Hours are named by the server, in the workspace's time zone: the axis and the
    // legend show those names, never the browser's zone or UTC.
    const labelOf = new Map(data.x.map((t, i) => [t, data.labels[i]]));
    const tickOf = new Map(data.x.map((t, i) => [t, data.ticks[i]]));
    const every = Math.max(1, Math.ceil(data.x.length / 8));
    const opts = {
      width: Math.max(300, holder.clientWidth - 16),
      height: 280,
      scales: {
        x: { time: false, range: (u, min, max) => (min === max ? [min - 1800, max + 1800] : [min, max]) },
        y: { range: (u, min, max) => [0, Math.max(2, max)] },
      },
      series: [
        { label: `Hour from (${data.zone})`, value: (u, t) => (t == null ? "–" : labelOf.get(t) || "") },
      ].concat(
        names.map((name) => {
          const line = LINES[name] || { stroke: "#1f5f8b", dash: [], marker: "solid" };
          return { label: name, stroke: line.stroke, dash: line.dash, width: 2 };
        }),
      ),
      legend: {
        live: true,
        markers: { width: 3, dash: (u, i) => (LINES[names[i - 1]] || {}).marker || "solid" },
      },
      axes: [
        {
          splits: () => data.x.filter((t, i) => i % every === 0),
          values: (u, splits) => splits.map((t) => tickOf.get(t) || ""),
        },
        // Counts of events: whole numbers on the axis.
        { label: "per hour", incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 1e4, 2e4, 5e4, 1e5] },
      ],
    };
    holder.setAttribute("data-series", names.join(","));
    holder.uplot = new uPlot(opts, [data.x].concat(data.series.map(([, values]) => values)), holder);
  }
}

document.addEventListener("DOMContentLoaded", drawCharts);
// Polled fragments bring a fresh chart holder and data: draw them again.
document.addEventListener("htmx:afterSettle", drawCharts);
