// Live progress of a training run: follows the run API (poller.js) and reloads the page when
// the run ends or a fold finishes, so the metrics and figures appear.
"use strict";
(function () {
  const box = document.getElementById("run-progress");
  if (!box || !["pending", "running"].includes(box.dataset.status)) return;
  const bar = document.getElementById("run-progress-bar");
  const percent = document.getElementById("run-progress-percent");
  const message = document.getElementById("run-progress-message");
  window.mersvPoll(box.dataset.url, (run) => {
    bar.value = run.progress;
    percent.textContent = Math.round(100 * run.progress) + "%";
    message.textContent = run.progress_message;
    if (run.status !== box.dataset.status || String(run.folds_done) !== box.dataset.foldsDone) {
      window.location.reload();
      return false;
    }
    return true;
  });
})();
