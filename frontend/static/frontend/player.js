// Frame-exact clip player. Every frame of the clip is one tile of a vertical filmstrip PNG,
// drawn on a canvas, so stepping moves exactly one frame (no approximate video seeks).
"use strict";

class FramePlayer {
  constructor({ canvas, filmstrip, nFrames, size, fps, onFrame }) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.nFrames = nFrames;
    this.size = size;
    this.fps = fps || 15;
    this.speed = 1;
    this.frame = 0;
    this.playing = false;
    this.onFrame = onFrame || (() => {});
    this.telemetry = { plays: 0, frames_stepped: 0, speeds_used: [1], zoom_used: false, full_field_opened: false };
    this.image = new Image();
    this.ready = new Promise((resolve, reject) => {
      this.image.onload = () => { this.draw(); resolve(); };
      this.image.onerror = () => reject(new Error("could not load the clip frames"));
    });
    this.image.src = filmstrip;
    this._tick = this._tick.bind(this);
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
  setZoom(zoom) {
    this.canvas.width = this.size * zoom;
    this.canvas.height = this.size * zoom;
    if (zoom !== 2) this.telemetry.zoom_used = true;
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

// The full-field preview with the target's track drawn over it.
function setupFullField(data, player) {
  const box = document.getElementById("fullfield");
  const video = document.getElementById("fullfield-video");
  const overlay = document.getElementById("fullfield-overlay");
  const button = document.getElementById("btn-fullfield");
  if (!box || !video || !data.preview) { if (button) button.disabled = true; return; }
  const drawTrack = () => {
    const w = video.videoWidth, h = video.videoHeight;
    if (!w) return;
    overlay.width = w; overlay.height = h;
    const sx = w / data.videoWidth, sy = h / data.videoHeight;
    const ctx = overlay.getContext("2d");
    ctx.clearRect(0, 0, w, h);
    const current = Math.min(data.track.length - 1, Math.floor(video.currentTime * data.fps));
    ctx.strokeStyle = "#ffcc00"; ctx.lineWidth = 1.5; ctx.beginPath();
    data.track.forEach(([x, y], i) => { if (i === 0) ctx.moveTo(x * sx, y * sy); else ctx.lineTo(x * sx, y * sy); });
    ctx.stroke();
    const [cx, cy] = data.track[Math.max(0, current)];
    const half = (data.size / 2) * sx;
    ctx.strokeStyle = "#00e0ff"; ctx.strokeRect(cx * sx - half, cy * sy - half, 2 * half, 2 * half);
  };
  const loop = () => { drawTrack(); if (!box.classList.contains("hidden")) requestAnimationFrame(loop); };
  button.addEventListener("click", () => {
    box.classList.toggle("hidden");
    if (!box.classList.contains("hidden")) {
      player.telemetry.full_field_opened = true;
      video.play().catch(() => {});
      requestAnimationFrame(loop);
    } else { video.pause(); }
  });
}

function setupPlayer(options = {}) {
  const data = JSON.parse(document.getElementById("player-data").textContent);
  const counter = document.getElementById("frame-no");
  const playButton = document.getElementById("btn-play");
  const player = new FramePlayer({
    canvas: document.getElementById("crop-canvas"),
    filmstrip: data.filmstrip, nFrames: data.nFrames, size: data.size, fps: data.fps,
    onFrame: (f) => { counter.textContent = String(f + 1); },
  });
  const syncButton = () => { playButton.textContent = player.playing ? "Pause" : "Play"; };
  playButton.addEventListener("click", () => { player.toggle(); syncButton(); });
  document.getElementById("btn-back").addEventListener("click", () => { player.step(-1); syncButton(); });
  document.getElementById("btn-fwd").addEventListener("click", () => { player.step(1); syncButton(); });
  document.getElementById("speed").addEventListener("change", (e) => player.setSpeed(Number(e.target.value)));
  document.getElementById("zoom").addEventListener("change", (e) => player.setZoom(Number(e.target.value)));
  player.setZoom(2);
  setupFullField(data, player);
  if (options.keyboard !== false) {
    document.addEventListener("keydown", (e) => {
      if (e.target.closest && e.target.closest("input, select, textarea")) return;
      if (e.key === " ") { e.preventDefault(); player.toggle(); syncButton(); }
      else if (e.key === "ArrowLeft") { e.preventDefault(); player.step(-1); syncButton(); }
      else if (e.key === "ArrowRight") { e.preventDefault(); player.step(1); syncButton(); }
    });
  }
  if (options.autoplay !== false) player.ready.then(() => { player.play(); syncButton(); }).catch(() => {});
  window.mersvPlayer = player;
  return player;
}

if (document.getElementById("player-data") && !document.body.dataset.customPlayer) {
  setupPlayer();
}
