// Live progress of a training run: polls the run API (slower as time passes) and reloads the
// page when the run ends or a fold finishes, so the metrics and figures appear.
"use strict";
(function () {
  const box = document.getElementById("run-progress");
  if (!box || !["pending", "running"].includes(box.dataset.status)) return;
  const bar = document.getElementById("run-progress-bar");
  const percent = document.getElementById("run-progress-percent");
  const message = document.getElementById("run-progress-message");
  let delay = 1000;
  const poll = async () => {
    try {
      const response = await fetch(box.dataset.url, { headers: { Accept: "application/json" } });
      if (response.ok) {
        const run = await response.json();
        bar.value = run.progress;
        percent.textContent = Math.round(100 * run.progress) + "%";
        message.textContent = run.progress_message;
        if (run.status !== box.dataset.status || String(run.folds_done) !== box.dataset.foldsDone) {
          window.location.reload();
          return;
        }
      }
    } catch (err) { /* network hiccup: try again later */ }
    delay = Math.min(delay * 1.3, 10000);
    setTimeout(poll, delay);
  };
  setTimeout(poll, delay);
})();
