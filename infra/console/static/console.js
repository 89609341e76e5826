// The console's live parts: the server-sent events from /stream refresh what
// a page shows (elements with data-refresh), alerts pop up as they are raised,
// and every running limit counts down from its absolute deadline (no polling).
(function () {
  "use strict";

  function left(seconds) {
    var sign = seconds < 0 ? "-" : "";
    var s = Math.abs(Math.round(seconds));
    var d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    var two = function (n) { return String(n).padStart(2, "0"); };
    if (d) { return sign + d + "d " + two(h) + "h"; }
    return sign + (h ? h + "h " : "") + two(m) + "m " + two(r) + "s";
  }

  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-deadline]").forEach(function (cell) {
      var seconds = (Date.parse(cell.dataset.deadline) - now) / 1000;
      cell.textContent = left(seconds);
      cell.classList.toggle("breached", seconds < 0);
    });
  }

  var pending = null;
  function refresh() {
    // twice: at once, and once more after the read models have surely caught up
    if (pending) { return; }
    pending = [150, 900].map(function (delay, i) {
      return setTimeout(function () {
        document.querySelectorAll("[data-refresh]").forEach(function (el) {
          htmx.ajax("GET", el.dataset.refresh, { target: el, swap: "outerHTML" });
        });
        if (i === 1) { pending = null; }
      }, delay);
    });
  }

  function shout(alert) {
    var list = document.getElementById("alerts");
    if (!list) { return; }
    var item = document.createElement("li");
    var type = alert.type || "alert";
    item.className = type.split(".").pop();
    var link = document.createElement("a");
    link.textContent = type + " " + String(alert.aggregate_id || "").slice(0, 8);
    if (alert.aggregate_id && type.indexOf("sla.") === 0) { link.href = "/cases/" + alert.aggregate_id; }
    item.appendChild(link);
    list.prepend(item);
    while (list.children.length > 5) { list.lastChild.remove(); }
    setTimeout(function () { item.remove(); }, 20000);
  }

  function live() {
    if (!document.body.dataset.live || !window.EventSource) { return; }
    var source = new EventSource("/stream");
    source.onopen = function () { document.body.dataset.stream = "open"; };
    source.onerror = function () { document.body.dataset.stream = "closed"; };
    source.addEventListener("event", refresh);
    source.addEventListener("changed", refresh);
    source.addEventListener("alert", function (message) {
      shout(JSON.parse(message.data));
      refresh();
    });
    source.addEventListener("ended", function () { source.close(); location.reload(); });
    window.ticketingStream = source;
  }

  function scrub() {
    var slider = document.getElementById("scrub");
    if (!slider) { return; }
    var times = slider.dataset.times.split(" ");
    var field = document.getElementById("at");
    slider.addEventListener("input", function () { field.value = times[slider.value - 1]; });
    slider.addEventListener("change", function () { slider.form.submit(); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    tick();
    setInterval(tick, 1000);
    live();
    scrub();
  });
})();
