// Live build progress of a dataset version: polls the API until the build ends.
"use strict";
(function () {
  const box = document.getElementById("version-status");
  if (!box || !["pending", "building"].includes(box.dataset.status)) return;
  const bar = document.getElementById("build-progress");
  const message = document.getElementById("build-message");
  let delay = 800;
  const poll = async () => {
    try {
      const response = await fetch(box.dataset.url, { headers: { Accept: "application/json" } });
      if (response.ok) {
        const version = await response.json();
        if (bar) bar.value = version.progress;
        if (message) message.textContent = version.progress_message;
        if (!["pending", "building"].includes(version.status)) { window.location.reload(); return; }
      }
    } catch (err) { /* try again */ }
    delay = Math.min(delay * 1.3, 5000);
    setTimeout(poll, delay);
  };
  setTimeout(poll, delay);
})();
