/* Panorama web UI: renders Plotly charts from JSON blocks and small keyboard helpers.
   No inline scripts (the Content-Security-Policy allows scripts from this site only). */
(function () {
  "use strict";
  var base = { displayModeBar: false, responsive: true };
  var font = { family: "system-ui, -apple-system, Segoe UI, Roboto, Arial, sans-serif", size: 12, color: "#1c2430" };

  function renderCharts(root) {
    if (!window.Plotly) { return; }
    (root || document).querySelectorAll("[data-chart]").forEach(function (el) {
      if (el.dataset.rendered) { return; }
      var spec = document.getElementById(el.dataset.chart);
      if (!spec) { return; }
      var fig = JSON.parse(spec.textContent);
      var layout = Object.assign({ margin: { l: 48, r: 12, t: 8, b: 40 }, font: font, paper_bgcolor: "rgba(0,0,0,0)",
        plot_bgcolor: "rgba(0,0,0,0)", autosize: true }, fig.layout || {});
      window.Plotly.newPlot(el, fig.data, layout, Object.assign({}, base, fig.config || {})).then(function () {
        el.dataset.rendered = "1";
        el.setAttribute("data-rendered", "1");
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () { renderCharts(document); });
  document.addEventListener("htmx:afterSettle", function (evt) { renderCharts(evt.target); });

  // "/" focuses the search box (unless typing in a field)
  document.addEventListener("keydown", function (evt) {
    if (evt.key !== "/" || evt.ctrlKey || evt.metaKey || evt.altKey) { return; }
    var tag = (document.activeElement && document.activeElement.tagName) || "";
    if (tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT") { return; }
    var box = document.getElementById("q") || document.getElementById("global-q");
    if (box) { evt.preventDefault(); box.focus(); box.select(); }
  });

  // confirm destructive actions (forms with data-confirm)
  document.addEventListener("submit", function (evt) {
    var msg = evt.target.getAttribute && evt.target.getAttribute("data-confirm");
    if (msg && !window.confirm(msg)) { evt.preventDefault(); }
  });
})();
