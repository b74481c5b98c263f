// Frame-exact clip player. Every frame of the clip is one tile of a vertical filmstrip PNG,
// drawn on a canvas, so stepping moves exactly one frame (no approximate video seeks).
"use strict";

class FramePlayer {
  constructor({ canvas, filmstrip, nFrames, size, fps, onFrame }) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.speed = 1;
    this.zoom = 2;
    this.playing = false;
    this.onFrame = onFrame || (() => {});
    this._tick = this._tick.bind(this);
    this.load({ filmstrip, nFrames, size, fps });
  }
  // Show another clip (the grading page swaps clips without reloading). Speed and zoom carry
  // over; telemetry starts afresh unless the caller hands back a clip's earlier telemetry.
  load({ filmstrip, nFrames, size, fps }, telemetry) {
    this.pause();
    this.nFrames = nFrames;
    this.size = size;
    this.fps = fps || 15;
    this.frame = 0;
    this.telemetry = telemetry || {
      plays: 0, frames_stepped: 0, speeds_used: [this.speed], zoom_used: this.zoom !== 2,
      full_field_opened: false,
    };
    const image = new Image();
    this.image = image;
    this.ready = new Promise((resolve, reject) => {
      image.onload = () => { if (image === this.image) { this.draw(); resolve(); } };
      image.onerror = () => reject(new Error("could not load the clip frames"));
    });
    this.ready.catch(() => {});
    image.src = filmstrip;
    this.setZoom(this.zoom, { silent: true });
    return this.ready;
  }
  draw() {
    if (!this.image.complete || !this.image.naturalWidth) return;
    this.ctx.imageSmoothingEnabled = false;
    this.ctx.drawImage(this.image, 0, this.frame * this.size, this.size, this.size,
      0, 0, this.canvas.width, this.canvas.height);
    this.onFrame(this.frame);
  }
  show(frame) {
    this.frame = ((frame % this.nFrames) + this.nFrames) % this.nFrames;
    this.draw();
  }
  step(delta) {
    this.pause();
    this.telemetry.frames_stepped += 1;
    this.show(this.frame + delta);
  }
  play() {
    if (this.playing) return;
    this.playing = true;
    this.telemetry.plays += 1;
    this._last = performance.now();
    this._acc = 0;
    requestAnimationFrame(this._tick);
  }
  pause() { this.playing = false; }
  toggle() { if (this.playing) this.pause(); else this.play(); }
  setSpeed(speed) {
    this.speed = speed;
    if (!this.telemetry.speeds_used.includes(speed)) this.telemetry.speeds_used.push(speed);
  }
  setZoom(zoom, { silent = false } = {}) {
    this.zoom = zoom;
    this.canvas.width = this.size * zoom;
    this.canvas.height = this.size * zoom;
    if (zoom !== 2 && !silent) this.telemetry.zoom_used = true;
    this.draw();
  }
  _tick(now) {
    if (!this.playing) return;
    this._acc += (now - this._last) / 1000;
    this._last = now;
    const period = 1 / (this.fps * this.speed);
    if (this._acc >= period) {
      const advance = Math.floor(this._acc / period);
      this._acc -= advance * period;
      this.show(this.frame + advance); // loops at the end of the clip
    }
    requestAnimationFrame(this._tick);
  }
}

// The full-field preview with the target's track drawn over it; `current()` gives the data of
// the clip now shown.
function setupFullField(current, player) {
  const box = document.getElementById("fullfield");
  const video = document.getElementById("fullfield-video");
  const overlay = document.getElementById("fullfield-overlay");
  const button = document.getElementById("btn-fullfield");
  if (!box || !video || !button) return { reset() {} };
  const drawTrack = () => {
    const data = current();
    const w = video.videoWidth, h = video.videoHeight;
    if (!w || !data.track || !data.track.length) return;
    overlay.width = w; overlay.height = h;
    const sx = w / (data.videoWidth || w), sy = h / (data.videoHeight || h);
    const ctx = overlay.getContext("2d");
    ctx.clearRect(0, 0, w, h);
    const frame = Math.min(data.track.length - 1, Math.floor(video.currentTime * data.fps));
    ctx.strokeStyle = "#ffcc00"; ctx.lineWidth = 1.5; ctx.beginPath();
    data.track.forEach(([x, y], i) => { if (i === 0) ctx.moveTo(x * sx, y * sy); else ctx.lineTo(x * sx, y * sy); });
    ctx.stroke();
    const [cx, cy] = data.track[Math.max(0, frame)];
    const half = (data.size / 2) * sx;
    ctx.strokeStyle = "#00e0ff"; ctx.strokeRect(cx * sx - half, cy * sy - half, 2 * half, 2 * half);
  };
  const loop = () => { drawTrack(); if (!box.classList.contains("hidden")) requestAnimationFrame(loop); };
  const close = () => { box.classList.add("hidden"); video.pause(); };
  const toggle = () => {
    if (!current().preview) return;
    if (!box.classList.contains("hidden")) { close(); return; }
    box.classList.remove("hidden");
    player.telemetry.full_field_opened = true;
    video.play().catch(() => {});
    requestAnimationFrame(loop);
  };
  button.addEventListener("click", toggle);
  const reset = () => {
    close();
    const preview = current().preview || "";
    button.disabled = !preview;
    if (video.getAttribute("src") !== preview) {
      if (preview) video.setAttribute("src", preview); else video.removeAttribute("src");
    }
  };
  reset();
  return { reset, toggle };
}

// Wires the player's controls. options.data: the clip to show (else the "player-data" JSON);
// options.keyboard: space / arrow keys (default on); options.autoplay (default on).
function setupPlayer(options = {}) {
  let data = options.data || JSON.parse(document.getElementById("player-data").textContent);
  const counter = document.getElementById("frame-no");
  const total = document.getElementById("frame-total");
  const playButton = document.getElementById("btn-play");
  const player = new FramePlayer({
    canvas: document.getElementById("crop-canvas"),
    filmstrip: data.filmstrip, nFrames: data.nFrames, size: data.size, fps: data.fps,
    onFrame: (f) => { counter.textContent = String(f + 1); },
  });
  total.textContent = String(data.nFrames);
  const syncButton = () => { playButton.textContent = player.playing ? "Pause" : "Play"; };
  const autoplay = () => {
    if (options.autoplay !== false) player.ready.then(() => { player.play(); syncButton(); }).catch(() => {});
  };
  playButton.addEventListener("click", () => { player.toggle(); syncButton(); });
  document.getElementById("btn-back").addEventListener("click", () => { player.step(-1); syncButton(); });
  document.getElementById("btn-fwd").addEventListener("click", () => { player.step(1); syncButton(); });
  document.getElementById("speed").addEventListener("change", (e) => player.setSpeed(Number(e.target.value)));
  document.getElementById("zoom").addEventListener("change", (e) => player.setZoom(Number(e.target.value)));
  player.setZoom(2, { silent: true });
  const fullField = setupFullField(() => data, player);
  if (options.keyboard !== false) {
    document.addEventListener("keydown", (e) => {
      if (e.ctrlKey || e.metaKey || e.altKey) return; // leave browser shortcuts alone
      if (e.target.closest && e.target.closest("input, select, textarea")) return;
      if (e.key === " ") { e.preventDefault(); player.toggle(); syncButton(); }
      else if (e.key === "ArrowLeft") { e.preventDefault(); player.step(-1); syncButton(); }
      else if (e.key === "ArrowRight") { e.preventDefault(); player.step(1); syncButton(); }
      else if (e.key === "f" || e.key === "F") { e.preventDefault(); fullField.toggle(); }
    });
  }
  // Swap in another clip; telemetry: that clip's earlier telemetry to continue, if any.
  player.loadClip = (next, telemetry) => {
    data = next;
    total.textContent = String(next.nFrames);
    counter.textContent = "1";
    const ready = player.load(next, telemetry);
    fullField.reset();
    syncButton();
    autoplay();
    return ready;
  };
  autoplay();
  window.mersvPlayer = player;
  return player;
}

if (document.getElementById("player-data") && !document.body.dataset.customPlayer) {
  setupPlayer();
}
