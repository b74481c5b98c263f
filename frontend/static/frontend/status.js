// Follows a video's ingestion status until it is ready or failed (poller.js).
"use strict";
(function () {
  const box = document.getElementById("video-status");
  if (!box || ["ready", "failed"].includes(box.dataset.status)) return;
  window.mersvPoll(box.dataset.url, (video) => {
    box.dataset.status = video.status;
    const status = document.getElementById("status-text");
    status.textContent = video.status;
    status.className = "status-" + video.status;
    document.getElementById("error-text").textContent = video.error || "";
    const waiting = document.getElementById("waiting-for");
    if (waiting && video.status !== "pending") waiting.remove();
    if (video.status === "ready") { window.location.reload(); return false; }
    return video.status !== "failed";
  });
})();
