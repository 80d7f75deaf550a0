// cancelq web console: the few things a server-rendered page cannot do alone.
// Served from /static (the CSP allows no inline script). Values go in with textContent only.
"use strict";

function confirmForms() {
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.dataset.confirm)) { event.preventDefault(); }
    });
  });
}

function refreshWhileLive() {
  var live = document.querySelector("[data-refresh]");
  if (live) { window.setTimeout(function () { window.location.reload(); },
                                1000 * Number(live.dataset.refresh)); }
}

function ago(seconds) {
  var s = Math.max(0, Math.round(seconds));
  if (s < 60) { return s + "s"; }
  if (s < 3600) { return Math.floor(s / 60) + "m " + (s % 60) + "s"; }
  return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
}

function fillTable(body, counts) {
  while (body.firstChild) { body.removeChild(body.firstChild); }
  Object.keys(counts).forEach(function (name) {
    var row = document.createElement("tr");
    var th = document.createElement("th");
    var td = document.createElement("td");
    th.textContent = name;
    td.textContent = String(counts[name]);
    td.className = "n";
    row.appendChild(th);
    row.appendChild(td);
    body.appendChild(row);
  });
}

function showRun(run) {
  document.getElementById("run-bar").setAttribute("width", String(run.percent));
  document.getElementById("run-percent").textContent = run.percent.toFixed(1);
  document.getElementById("run-done").textContent = String(run.done);
  document.getElementById("run-jobs").textContent = String(run.jobs);
  document.getElementById("run-status").textContent = run.finished ? "finished" : "running";
  document.getElementById("run-rate").textContent =
    run.rate_per_second === null ? "-" : String(run.rate_per_second);
  document.getElementById("run-eta").textContent =
    run.eta_seconds === null ? "-" : ago(run.eta_seconds);
  fillTable(document.getElementById("run-states"), run.states);
  fillTable(document.getElementById("run-outcomes"), run.outcomes);
}

function followRun() {
  var section = document.getElementById("run");
  if (!section || section.dataset.finished === "yes") { return; }
  var url = "/api/v1/runs/" + section.dataset.run;
  function poll() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (answer) { return answer.ok ? answer.json() : null; })
      .then(function (run) {
        if (run) { showRun(run); }
        if (!run || !run.finished) { window.setTimeout(poll, 1000); }
        else { section.dataset.finished = "yes"; }
      })
      .catch(function () { window.setTimeout(poll, 3000); });
  }
  window.setTimeout(poll, 1000);
}

document.addEventListener("DOMContentLoaded", function () {
  confirmForms();
  refreshWhileLive();
  followRun();
});
