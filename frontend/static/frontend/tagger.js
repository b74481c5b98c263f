// The video page's first-frame tagger: the server-made PNG of frame 0 on a zoomable, pannable
// canvas (wheel or buttons zoom about a point, drag pans; zoomed in it draws the full-resolution
// frame with unsmoothed pixels), candidate heads as cyan rings, tags as numbered yellow rings.
// A click snaps to the nearest candidate within the snap radius (a head length), else tags the
// clicked point; a click on a tag removes it. Coordinates are px of the full frame.
"use strict";
(function () {
  const box = document.getElementById("tagger");
  if (!box) return;
  const canvas = document.getElementById("first-frame");
  const ctx = canvas.getContext("2d");
  const hidden = document.querySelector("#targets-form input[name=targets]");
  const list = document.getElementById("target-list");
  const zoomText = document.getElementById("zoom-text");
  const width = Number(box.dataset.width), height = Number(box.dataset.height);
  const snapRadius = Number(box.dataset.snapRadius);
  const candidates = JSON.parse(document.getElementById("candidates-data").textContent);
  const kept = JSON.parse(document.getElementById("kept-targets-data").textContent);
  // Targets an earlier attempt lost: the targets tagged now take their places.
  const lostData = document.getElementById("lost-targets-data");
  const lost = lostData ? JSON.parse(lostData.textContent) : [];
  const MAX_TARGETS = 50;
  let targets = [];
  try { targets = JSON.parse(hidden.value || "[]"); } catch (e) { targets = []; }

  // View: canvas px = (frame px - origin) * scale.
  const view = { scale: 1, x: 0, y: 0 };
  const fitScale = () => Math.min(canvas.width / width, canvas.height / height);
  const images = { overview: new Image(), full: new Image() };
  images.overview.src = box.dataset.overviewUrl;
  images.full.src = box.dataset.frameUrl;

  const clampView = () => {
    const visibleW = canvas.width / view.scale, visibleH = canvas.height / view.scale;
    view.x = visibleW >= width ? (width - visibleW) / 2 : Math.min(Math.max(view.x, 0), width - visibleW);
    view.y = visibleH >= height ? (height - visibleH) / 2 : Math.min(Math.max(view.y, 0), height - visibleH);
  };
  const fit = () => {
    canvas.height = Math.max(200, Math.round(canvas.width * height / width));
    view.scale = fitScale(); view.x = 0; view.y = 0; clampView(); render();
  };
  const zoomAt = (factor, cx, cy) => {
    const fx = view.x + cx / view.scale, fy = view.y + cy / view.scale;
    view.scale = Math.min(Math.max(view.scale * factor, fitScale()), 32);
    view.x = fx - cx / view.scale; view.y = fy - cy / view.scale;
    clampView(); render();
  };
  const toFrame = (event) => {
    const rect = canvas.getBoundingClientRect();
    const cx = (event.clientX - rect.left) * canvas.width / rect.width;
    const cy = (event.clientY - rect.top) * canvas.height / rect.height;
    return { cx, cy, x: view.x + cx / view.scale, y: view.y + cy / view.scale };
  };
  const toCanvas = (p) => [(p.x - view.x) * view.scale, (p.y - view.y) * view.scale];

  const ring = (p, radius, colour, label) => {
    const [cx, cy] = toCanvas(p);
    ctx.strokeStyle = colour; ctx.beginPath(); ctx.arc(cx, cy, radius, 0, 2 * Math.PI); ctx.stroke();
    if (label) { ctx.fillStyle = colour; ctx.fillText(label, cx + radius + 2, cy - radius); }
  };
  const render = () => {
    hidden.value = JSON.stringify(targets);
    list.textContent = targets.length
      ? targets.map((t, i) => `#${kept.length + i + 1} (${+t.x.toFixed(3)}, ${+t.y.toFixed(3)})`).join(", ")
      : "none";
    canvas.dataset.scale = String(view.scale);
    canvas.dataset.originX = String(view.x);
    canvas.dataset.originY = String(view.y);
    zoomText.textContent = `${Math.round(view.scale * 100)} %`;
    ctx.fillStyle = "#222"; ctx.fillRect(0, 0, canvas.width, canvas.height);
    // The overview while it is sharp enough; the frame's own pixels once zoomed past it.
    const overviewSharp = images.overview.naturalWidth / width >= view.scale;
    const image = overviewSharp || !images.full.complete ? images.overview : images.full;
    if (image.complete && image.naturalWidth) {
      ctx.imageSmoothingEnabled = view.scale < 1;
      const k = image.naturalWidth / width;
      ctx.drawImage(image, view.x * k, view.y * k, canvas.width / view.scale * k, canvas.height / view.scale * k,
        0, 0, canvas.width, canvas.height);
    }
    ctx.lineWidth = 1.5;
    const headRadius = Math.max(snapRadius * view.scale / 2, 4);
    candidates.forEach((c) => ring(c, headRadius, "#33ddff", ""));
    kept.forEach((t, i) => ring(t, headRadius + 3, "#88ff88", String((t.index ?? i) + 1)));
    lost.forEach((t) => ring(t, headRadius + 3, "#ff5555", `${t.index + 1} lost`));
    ctx.lineWidth = 2;
    targets.forEach((t, i) => ring(t, headRadius + 3, "#ffcc00", String(kept.length + i + 1)));
  };
  const nearest = (points, p, radius) => {
    let best = -1, bestD = radius;
    points.forEach((q, i) => { const d = Math.hypot(q.x - p.x, q.y - p.y); if (d <= bestD) { best = i; bestD = d; } });
    return best;
  };
  const add = (p) => {
    if (kept.length + targets.length >= MAX_TARGETS) { list.textContent = `at most ${MAX_TARGETS} targets per video`; return; }
    targets.push({ x: p.x, y: p.y });
  };

  let drag = null;
  canvas.addEventListener("mousedown", (e) => { drag = { start: toFrame(e), moved: false, x: view.x, y: view.y }; });
  window.addEventListener("mousemove", (e) => {
    if (!drag) return;
    const now = toFrame(e);
    if (Math.hypot(now.cx - drag.start.cx, now.cy - drag.start.cy) > 4) drag.moved = true;
    if (drag.moved) {
      view.x = drag.x - (now.cx - drag.start.cx) / view.scale;
      view.y = drag.y - (now.cy - drag.start.cy) / view.scale;
      clampView(); render();
    }
  });
  window.addEventListener("mouseup", (e) => {
    if (!drag) return;
    const wasDrag = drag.moved;
    drag = null;
    if (wasDrag || e.target !== canvas) return;
    const p = toFrame(e);
    const onTag = nearest(targets, p, Math.max(8 / view.scale, 1));
    if (onTag >= 0) { targets.splice(onTag, 1); render(); return; }
    const snap = nearest(candidates, p, snapRadius);
    add(snap >= 0 ? { x: candidates[snap].x, y: candidates[snap].y } : { x: p.x, y: p.y });
    render();
  });
  canvas.addEventListener("wheel", (e) => {
    e.preventDefault();
    const p = toFrame(e);
    zoomAt(e.deltaY < 0 ? 1.25 : 0.8, p.cx, p.cy);
  }, { passive: false });
  document.getElementById("zoom-in").addEventListener("click", () => zoomAt(2, canvas.width / 2, canvas.height / 2));
  document.getElementById("zoom-out").addEventListener("click", () => zoomAt(0.5, canvas.width / 2, canvas.height / 2));
  document.getElementById("zoom-fit").addEventListener("click", fit);
  document.getElementById("tag-all").addEventListener("click", () => {
    const room = MAX_TARGETS - kept.length;
    targets = candidates.slice(0, room).map((c) => ({ x: c.x, y: c.y }));
    render();
  });
  document.getElementById("tag-clear").addEventListener("click", () => { targets = []; render(); });
  document.getElementById("manual-add").addEventListener("click", () => {
    const x = Number(document.getElementById("manual-x").value);
    const y = Number(document.getElementById("manual-y").value);
    if (document.getElementById("manual-x").value === "" || document.getElementById("manual-y").value === "") return;
    if (Number.isFinite(x) && Number.isFinite(y) && x >= 0 && y >= 0 && x < width && y < height) { add({ x, y }); render(); }
    else list.textContent = `type x and y inside the ${width}×${height} frame`;
  });
  images.overview.addEventListener("load", render);
  images.full.addEventListener("load", render);
  fit();
})();
