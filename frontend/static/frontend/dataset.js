// Live build progress of a dataset version: follows the API (poller.js) until the build ends.
"use strict";
(function () {
  const box = document.getElementById("version-status");
  if (!box || !["pending", "building"].includes(box.dataset.status)) return;
  const bar = document.getElementById("build-progress");
  const message = document.getElementById("build-message");
  window.mersvPoll(box.dataset.url, (version) => {
    if (bar) bar.value = version.progress;
    if (message) message.textContent = version.progress_message;
    if (!["pending", "building"].includes(version.status)) { window.location.reload(); return false; }
    return true;
  }, { fastest: 800, slowest: 5000 });
})();
