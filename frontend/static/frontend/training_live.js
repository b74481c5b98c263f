// Live run and grid pages: while the job is active, poll the page's live endpoint (poller.js)
// and swap in each region the server redrew (progress, folds, metrics and learning curves of a
// run; the runs table and the paper's tables of a grid). Only regions whose HTML changed are
// replaced, and not the one holding the focus, so a focused button keeps it while the curves
// grow. No reload: the last answer (active false) draws the final state and polling stops.
"use strict";
(function () {
  const live = document.querySelector(".live-regions");
  if (!live || live.dataset.active !== "1") return;
  const statusText = document.getElementById(live.dataset.statusId);
  const drawn = new Map();

  window.mersvPoll(live.dataset.url, (answer) => {
    for (const [id, html] of Object.entries(answer.regions)) {
      const region = document.getElementById(id);
      if (!region || drawn.get(id) === html) continue;
      // A region holding the keyboard focus (the cancel button) waits while the job runs:
      // its forms carry a fresh CSRF token in every answer, and redrawing would drop the focus.
      if (answer.active && region.contains(document.activeElement)) continue;
      region.innerHTML = html; // markup from the server's templates, every text escaped there
      drawn.set(id, html);
    }
    if (statusText) {
      statusText.textContent = answer.status_display;
      statusText.className = "muted status-" + answer.status;
    }
    live.dataset.active = answer.active ? "1" : "0";
    return answer.active;
  }, { fastest: 2000, slowest: 10000 });
})();
