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

// Whether a key pressed while `el` has focus is a shortcut rather than typing: not in a text
// box (typing there stays typing), not in a select outside the player (a form's own choice).
// The player's own speed and zoom selects give up their keys: the page's shortcuts win.
const TEXT_INPUT_TYPES = new Set(["text", "search", "email", "url", "tel", "password", "number"]);
function isTextEntry(el) {
  if (!el || el.nodeType !== 1) return false;
  if (el.isContentEditable || el.tagName === "TEXTAREA") return true;
  return el.tagName === "INPUT" && TEXT_INPUT_TYPES.has((el.getAttribute("type") || "text").toLowerCase());
}
function keyIsShortcut(el) {
  if (isTextEntry(el)) return false;
  if (el && el.tagName === "SELECT" && !el.closest("#player")) return false;
  return true;
}

// Wires the player's controls. options.data: the clip to show (else the "player-data" JSON);
// options.keyboard: space / arrow keys / F handled by the player (default on; a page with
// shortcuts of its own sets it off and calls player.handleKey); options.autoplay (default on).
function setupPlayer(options = {}) {
  let data = options.data || JSON.parse(document.getElementById("player-data").textContent);
  const counter = document.getElementById("frame-no");
  const total = document.getElementById("frame-total");
  const playButton = document.getElementById("btn-play");
  const canvas = document.getElementById("crop-canvas");
  const marker = document.getElementById("target-marker");
  const player = new FramePlayer({
    canvas,
    filmstrip: data.filmstrip, nFrames: data.nFrames, size: data.size, fps: data.fps,
    onFrame: (f) => { counter.textContent = String(f + 1); },
  });
  total.textContent = String(data.nFrames);
  const syncButton = () => { playButton.textContent = player.playing ? "Pause" : "Play"; };
  // The marker sits on the crop's centre pixel (size // 2 on each axis), which is the tracked
  // centre of the target in every frame (annotation.ingest.tracking.crop_centred).
  const syncMarker = () => {
    if (!marker) return;
    const zoom = player.zoom, side = 22 * zoom;
    const centre = (Math.floor(player.size / 2) + 0.5) * zoom;
    marker.style.width = marker.style.height = `${side}px`;
    marker.style.left = `${centre - side / 2}px`;
    marker.style.top = `${centre - side / 2}px`;
  };
  const autoplay = () => {
    if (options.autoplay !== false) player.ready.then(() => { player.play(); syncButton(); }).catch(() => {});
  };
  // Mouse users: controls give focus back, so the next key is a shortcut again.
  const onClick = (id, action) => {
    const button = document.getElementById(id);
    button.addEventListener("click", () => { button.blur(); action(); syncButton(); });
  };
  onClick("btn-play", () => player.toggle());
  onClick("btn-back", () => player.step(-1));
  onClick("btn-fwd", () => player.step(1));
  const onChange = (id, action) => {
    const select = document.getElementById(id);
    select.addEventListener("change", () => { action(Number(select.value)); select.blur(); });
  };
  onChange("speed", (v) => player.setSpeed(v));
  onChange("zoom", (v) => { player.setZoom(v); syncMarker(); });
  player.setZoom(2, { silent: true });
  syncMarker();
  const fullField = setupFullField(() => data, player);
  // Space, arrows and F; true when the key was one of them (the caller prevents its default).
  player.handleKey = (key) => {
    if (key === " ") player.toggle();
    else if (key === "ArrowLeft") player.step(-1);
    else if (key === "ArrowRight") player.step(1);
    else if (key === "f" || key === "F") fullField.toggle();
    else return false;
    syncButton();
    return true;
  };
  if (options.keyboard !== false) {
    // Capture phase: a focused speed or zoom select must not eat the keys first.
    document.addEventListener("keydown", (e) => {
      if (e.ctrlKey || e.metaKey || e.altKey) return; // leave browser shortcuts alone
      if (!keyIsShortcut(e.target)) return;
      if (player.handleKey(e.key)) e.preventDefault();
    }, true);
  }
  // Swap in another clip; telemetry: that clip's earlier telemetry to continue, if any.
  player.loadClip = (next, telemetry) => {
    data = next;
    total.textContent = String(next.nFrames);
    counter.textContent = "1";
    const ready = player.load(next, telemetry);
    syncMarker();
    fullField.reset();
    syncButton();
    autoplay();
    return ready;
  };
  autoplay();
  window.mersvPlayer = player;
  return player;
}

// A reference clip looping on a small canvas (the field guide): frames from its filmstrip at
// the clip's frame rate, until stop().
class FilmstripLoop {
  constructor(canvas, { filmstrip, nFrames, size, fps }) {
    Object.assign(this, { canvas, nFrames, size, fps: fps || 15, frame: 0, running: true });
    this.ctx = canvas.getContext("2d");
    this.image = new Image();
    this.image.onload = () => { this._last = performance.now(); this._draw(); requestAnimationFrame((t) => this._tick(t)); };
    this.image.src = filmstrip;
  }
  _draw() {
    this.ctx.imageSmoothingEnabled = false;
    this.ctx.drawImage(this.image, 0, this.frame * this.size, this.size, this.size,
      0, 0, this.canvas.width, this.canvas.height);
    this.canvas.dataset.frame = String(this.frame);
  }
  _tick(now) {
    if (!this.running) return;
    if (now - this._last >= 1000 / this.fps) {
      this._last = now;
      this.frame = (this.frame + 1) % this.nFrames;
      this._draw();
    }
    requestAnimationFrame((t) => this._tick(t));
  }
  stop() { this.running = false; }
}

if (document.getElementById("player-data") && !document.body.dataset.customPlayer) {
  setupPlayer();
}
