// Follows a video's status (poller.js): until its first frame is made, and while it is being
// ingested; reloads the page when there is something new to show.
"use strict";
(function () {
  const box = document.getElementById("video-status");
  if (!box) return;
  const busy = (status) => ["pending", "processing"].includes(status);
  // Videos imported in bulk have no first frame to wait for: only uploads do.
  // A failed one-step upload gets its first frame after the failure (for the retry form).
  // So does a partly failed one (its lost targets are moved there).
  const waitingForFrame = () => !box.dataset.firstFrame
    && (busy(box.dataset.status) || ["needs_targets", "failed"].includes(box.dataset.status)
      || Boolean(box.dataset.partlyFailed));
  if (!busy(box.dataset.status) && !waitingForFrame()) return;
  window.mersvPoll(box.dataset.url, (video) => {
    const status = document.getElementById("status-text");
    status.textContent = video.status + (video.partly_failed ? ", partly failed" : "");
    status.className = "status-" + video.status + (video.partly_failed ? " status-partly_failed" : "");
    document.getElementById("error-text").textContent = video.error || "";
    const waiting = document.getElementById("waiting-for");
    if (waiting && video.status !== "pending") waiting.remove();
    const frameNew = waitingForFrame() && (video.first_frame_url || video.first_frame_error);
    // Ready: the clips to show. Failed: the retry form, where there is a first frame to tag.
    const finished = busy(box.dataset.status) && !busy(video.status);
    const newForm = finished && (video.status === "ready" || box.dataset.firstFrame);
    if (video.partly_failed) box.dataset.partlyFailed = "1";
    if (frameNew || newForm) { window.location.reload(); return false; }
    box.dataset.status = video.status;
    return !finished || waitingForFrame();
  });
})();
