// Draws every chart of a dashboard page: each <div class="chart" data-figure="ID"> gets the Plotly
// figure stored as JSON in <script type="application/json" id="ID"> (no inline script: see the CSP).
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("div.chart[data-figure]").forEach(function (div) {
    var source = document.getElementById(div.dataset.figure);
    if (!source) { return; }
    var figure = JSON.parse(source.textContent);
    Plotly.newPlot(div, figure.data, figure.layout, { displaylogo: false, responsive: true, displayModeBar: "hover" });
  });
});
