// Polls a video's ingestion status until it is ready or failed (slower as time passes).
"use strict";
(function () {
  const box = document.getElementById("video-status");
  if (!box) return;
  let delay = 1000;
  const poll = async () => {
    if (["ready", "failed"].includes(box.dataset.status)) return;
    try {
      const response = await fetch(box.dataset.url, { headers: { Accept: "application/json" } });
      if (response.ok) {
        const video = await response.json();
        box.dataset.status = video.status;
        const status = document.getElementById("status-text");
        status.textContent = video.status;
        status.className = "status-" + video.status;
        document.getElementById("error-text").textContent = video.error || "";
        if (video.status === "ready") { window.location.reload(); return; }
      }
    } catch (err) { /* network hiccup: try again later */ }
    delay = Math.min(delay * 1.5, 10000);
    setTimeout(poll, delay);
  };
  setTimeout(poll, delay);
})();
