// Upload form: show the chosen file's first frame and tag targets by clicking on it.
"use strict";
(function () {
  const input = document.querySelector("#upload-form input[type=file]");
  const canvas = document.getElementById("first-frame");
  const hidden = document.querySelector("#upload-form input[name=targets]");
  const list = document.getElementById("target-list");
  const ctx = canvas.getContext("2d");
  let targets = [];
  let frame = null; // {video, width, height}
  try { targets = JSON.parse(hidden.value || "[]"); } catch (e) { targets = []; }

  const render = () => {
    hidden.value = JSON.stringify(targets);
    list.textContent = targets.length ? targets.map((t, i) => `#${i + 1} (${t.x.toFixed(1)}, ${t.y.toFixed(1)})`).join(", ") : "none";
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    if (frame) ctx.drawImage(frame.video, 0, 0, canvas.width, canvas.height);
    const sx = frame ? canvas.width / frame.width : 1, sy = frame ? canvas.height / frame.height : 1;
    ctx.strokeStyle = "#ffcc00"; ctx.lineWidth = 2;
    targets.forEach((t, i) => {
      ctx.beginPath(); ctx.arc(t.x * sx, t.y * sy, 8, 0, 2 * Math.PI); ctx.stroke();
      ctx.fillStyle = "#ffcc00"; ctx.fillText(String(i + 1), t.x * sx + 10, t.y * sy - 10);
    });
  };

  input.addEventListener("change", () => {
    const file = input.files[0];
    if (!file) return;
    const video = document.createElement("video");
    video.muted = true; video.preload = "auto";
    video.src = URL.createObjectURL(file);
    video.addEventListener("loadeddata", () => {
      frame = { video, width: video.videoWidth, height: video.videoHeight };
      canvas.height = Math.round(canvas.width * video.videoHeight / video.videoWidth);
      video.currentTime = 0;
      render();
    });
    video.addEventListener("seeked", render);
    video.addEventListener("error", () => { frame = null; list.textContent = "this browser cannot show the file: type the coordinates below"; });
  });

  canvas.addEventListener("click", (e) => {
    if (!frame) return;
    const rect = canvas.getBoundingClientRect();
    const x = (e.clientX - rect.left) * frame.width / rect.width;
    const y = (e.clientY - rect.top) * frame.height / rect.height;
    const near = targets.findIndex((t) => Math.hypot(t.x - x, t.y - y) < 12 * frame.width / rect.width);
    if (near >= 0) targets.splice(near, 1); else targets.push({ x, y });
    render();
  });
  document.getElementById("manual-add").addEventListener("click", () => {
    const x = Number(document.getElementById("manual-x").value);
    const y = Number(document.getElementById("manual-y").value);
    if (Number.isFinite(x) && Number.isFinite(y) && x >= 0 && y >= 0) { targets.push({ x, y }); render(); }
  });
  render();
})();
