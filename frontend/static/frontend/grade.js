// The expert's grading page: one clip at a time, keyboard first, through the grading API.
// Modes: "queue" (a clip from the queue), "revisit" (an earlier grade reopened with U to change
// it), "empty" (nothing left). The panel's votes appear only in answers to our own grades.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const config = JSON.parse($("grading-config").textContent);
  const firstClip = JSON.parse($("grading-clip").textContent);
  const MAX_TIME_MS = 3600000; // the server's bound on time_spent_ms
  const SVG = "http://www.w3.org/2000/svg";

  const state = {
    mode: "empty",
    clip: null,
    grade: null,
    shownAt: 0,
    spentMs: 0, // time on this clip before it was last shown (a clip left for a revisit)
    queued: null, // the queue clip put aside while revisiting: {clip, grade, spentMs, telemetry}
    history: [], // clips graded on this page, oldest first: {ratingId, clip, grade}
    revisitIndex: -1,
    choosingReason: false,
    busy: false,
  };
  let player = null;

  const csrfToken = () => {
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    if (match) return decodeURIComponent(match[1]);
    const input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  };

  async function api(method, url, body) {
    const response = await fetch(url, {
      method,
      credentials: "same-origin",
      headers: { Accept: "application/json", "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = null;
    if (response.status !== 204) { try { data = await response.json(); } catch (err) { data = null; } }
    return { status: response.status, ok: response.ok, data };
  }

  const errorText = (r) => {
    if (r.data && r.data.detail) return String(r.data.detail);
    if (r.data && typeof r.data === "object") {
      return Object.entries(r.data).map(([k, v]) => `${k}: ${[].concat(v).join(" ")}`).join("; ");
    }
    return `the server answered ${r.status}; try again`;
  };
  const say = (text) => { $("grading-status").textContent = text; };
  const elapsed = () => Math.min(MAX_TIME_MS, Math.round(state.spentMs + performance.now() - state.shownAt));

  const playerData = (clip) => ({
    filmstrip: clip.filmstrip_url, nFrames: clip.n_frames, size: clip.crop_size, fps: clip.fps,
    preview: clip.preview_url, track: clip.track, videoWidth: clip.video_width, videoHeight: clip.video_height,
  });

  function select(grade) {
    state.grade = grade;
    document.querySelectorAll(".grade-option").forEach((button) => {
      const on = button.dataset.grade === grade;
      button.setAttribute("aria-pressed", on ? "true" : "false");
      button.classList.toggle("selected", on);
    });
  }

  function show(clip, { grade = null, spentMs = 0, telemetry } = {}) {
    state.clip = clip;
    state.spentMs = spentMs;
    state.shownAt = performance.now();
    $("queue-empty").classList.add("hidden");
    $("grading-main").classList.remove("hidden");
    $("clip-id").textContent = clip.clip_id;
    delete document.body.dataset.clipReady;
    if (!player) player = setupPlayer({ data: playerData(clip) });
    else player.loadClip(playerData(clip), telemetry);
    player.ready.then(() => { if (state.clip === clip) document.body.dataset.clipReady = clip.clip_id; });
    select(grade);
    closeReasons();
    const revisit = state.mode === "revisit";
    $("mode-badge").classList.toggle("hidden", !revisit);
    $("revisit-note").classList.toggle("hidden", !revisit);
    $("btn-submit").firstChild.textContent = revisit ? "Save changed grade " : "Submit and next ";
    if (revisit) $("revisit-previous").textContent = grade;
  }

  function showEmpty() {
    state.mode = "empty";
    state.clip = null;
    select(null);
    if (player) player.pause();
    $("grading-main").classList.add("hidden");
    $("queue-empty").classList.remove("hidden");
    $("clip-id").textContent = "–";
  }

  function showProgress(progress) {
    $("progress-rated").textContent = progress.rated;
    $("progress-cannot-judge").textContent = progress.cannot_judge;
    $("progress-remaining").textContent = progress.remaining;
  }

  // The queue's next clip, as an answer's `next` brings it (clip null: the queue is empty).
  function moveOn(next) {
    showProgress(next.progress);
    if (!next.clip) { showEmpty(); return; }
    state.mode = "queue";
    show(next.clip);
  }

  async function nextClip() {
    const [r, progress] = await Promise.all([api("GET", config.urls.next), api("GET", config.urls.progress)]);
    if (progress.ok) showProgress(progress.data);
    if (r.status === 204) { showEmpty(); return; }
    if (!r.ok) { say(errorText(r)); return; }
    state.mode = "queue";
    show(r.data);
  }

  function drawPanel(counts, mine) {
    const svg = $("panel-chart");
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    const values = config.grades.map((g) => counts[g] || 0);
    const top = Math.max(1, ...values);
    const add = (tag, attrs, text) => {
      const node = document.createElementNS(SVG, tag);
      Object.entries(attrs).forEach(([k, v]) => node.setAttribute(k, String(v)));
      if (text !== undefined) node.textContent = text;
      svg.appendChild(node);
    };
    config.grades.forEach((g, i) => {
      const height = Math.round((70 * values[i]) / top);
      const x = 10 + i * 50;
      add("rect", { x, y: 85 - height, width: 36, height, class: g === mine ? "bar bar-mine" : "bar" });
      add("text", { x: x + 18, y: 80 - height, "text-anchor": "middle", class: "bar-count" }, values[i]);
      add("text", { x: x + 18, y: 102, "text-anchor": "middle", class: "bar-label" }, g);
    });
    svg.classList.remove("hidden");
  }

  function showLastGraded(clip, rating) {
    $("last-graded").classList.remove("hidden");
    $("last-clip-id").textContent = clip.clip_id;
    $("last-grade").textContent = rating.grade;
    if (rating.panel) {
      const total = config.grades.reduce((n, g) => n + (rating.panel[g] || 0), 0);
      $("panel-caption").textContent = `The panel so far: ${total} grade${total === 1 ? "" : "s"}, yours included.`;
      drawPanel(rating.panel, rating.grade);
    } else {
      $("panel-caption").textContent = "";
      $("panel-chart").classList.add("hidden");
    }
  }

  async function submitNew() {
    const clip = state.clip, grade = state.grade;
    const r = await api("POST", config.urls.ratings, {
      clip_id: clip.clip_id, grade, time_spent_ms: elapsed(), telemetry: player.telemetry, next: true,
    });
    if (r.status === 201) {
      state.history.push({ ratingId: r.data.id, clip, grade: r.data.grade });
      showLastGraded(clip, r.data);
      say("");
      moveOn(r.data.next);
    } else if (r.status === 409) {
      say(errorText(r)); // answered in another tab: move on
      await nextClip();
    } else {
      say(errorText(r));
    }
  }

  async function saveChange() {
    const entry = state.history[state.revisitIndex];
    const r = await api("PATCH", `${config.urls.ratings}${entry.ratingId}/`, {
      grade: state.grade, time_spent_ms: elapsed(), telemetry: player.telemetry,
    });
    if (!r.ok) { say(errorText(r)); return; }
    say(`Clip ${entry.clip.clip_id}: your grade is now ${r.data.grade}.`);
    entry.grade = r.data.grade;
    showLastGraded(entry.clip, r.data);
    await leaveRevisit();
  }

  async function submit() {
    if (state.busy || !state.clip) return;
    if (!state.grade) { say("Choose a grade first: A–E or 1–5."); return; }
    state.busy = true;
    try {
      if (state.mode === "revisit") await saveChange(); else await submitNew();
    } catch (err) {
      say("The server could not be reached; press Enter to try again.");
    } finally {
      state.busy = false;
    }
  }

  // U: clear a chosen but unsubmitted grade; otherwise reopen the clip graded before.
  function undo() {
    if (state.mode === "queue" && state.grade) { select(null); say("Grade cleared."); return; }
    const index = state.mode === "revisit" ? state.revisitIndex - 1 : state.history.length - 1;
    if (index < 0) {
      say(state.history.length ? "No earlier clip graded on this page." : "Nothing to undo yet: grade a clip first.");
      return;
    }
    if (state.mode === "queue") {
      state.queued = { clip: state.clip, grade: state.grade, spentMs: elapsed(), telemetry: player.telemetry };
    } else if (state.mode === "empty") {
      state.queued = null;
    }
    state.mode = "revisit";
    state.revisitIndex = index;
    const entry = state.history[index];
    show(entry.clip, { grade: entry.grade });
    say(`Reopened clip ${entry.clip.clip_id}: choose a new grade and press Enter, or Esc to go back.`);
  }

  async function leaveRevisit() {
    const queued = state.queued;
    state.queued = null;
    state.revisitIndex = -1;
    state.mode = "queue";
    if (queued) show(queued.clip, queued); else await nextClip();
  }

  function openReasons() {
    if (state.mode !== "queue") { say("You graded this clip: choose a grade to change it instead."); return; }
    state.choosingReason = true;
    $("cannot-judge-reasons").classList.remove("hidden");
    say("Cannot judge: press 1–4 for the reason, Esc to cancel.");
  }
  function closeReasons() {
    state.choosingReason = false;
    $("cannot-judge-reasons").classList.add("hidden");
  }

  async function submitCannotJudge(reason) {
    if (state.busy || state.mode !== "queue") return;
    state.busy = true;
    closeReasons();
    try {
      const r = await api("POST", config.urls.cannotJudge, {
        clip_id: state.clip.clip_id, reason, time_spent_ms: elapsed(), next: true,
      });
      if (r.status === 201) {
        say(`Clip ${state.clip.clip_id}: recorded as "cannot judge".`);
        moveOn(r.data.next);
      } else if (r.status === 409) {
        say(errorText(r));
        await nextClip();
      } else {
        say(errorText(r));
      }
    } catch (err) {
      say("The server could not be reached; try again.");
    } finally {
      state.busy = false;
    }
  }

  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const target = e.target.closest ? e.target : document.body;
    if (target.closest("input, select, textarea")) return;
    if (e.key === "Enter" && target.closest("button, a, summary")) return; // a focused control acts
    if (state.busy) return;
    const key = e.key.length === 1 ? e.key.toUpperCase() : e.key;
    if (state.choosingReason) {
      const n = /^[1-9]$/.test(key) ? Number(key) : 0;
      if (n >= 1 && n <= config.reasons.length) submitCannotJudge(config.reasons[n - 1]);
      else if (key === "Escape" || key === "X") { closeReasons(); say(""); }
      else return;
    } else if (key === "U") {
      undo();
    } else if (state.mode === "empty") {
      return;
    } else if (config.grades.includes(key)) {
      select(key);
    } else if (/^[1-9]$/.test(key) && Number(key) <= config.grades.length) {
      select(config.grades[Number(key) - 1]);
    } else if (key === "Enter") {
      submit();
    } else if (key === "X") {
      openReasons();
    } else if (key === "Escape" && state.mode === "revisit") {
      leaveRevisit();
    } else {
      return;
    }
    e.preventDefault();
  });

  // Mouse users: the same actions; buttons give focus back so the keys keep working.
  const click = (selector, action) => document.querySelectorAll(selector).forEach((button) =>
    button.addEventListener("click", () => { button.blur(); if (!state.busy) action(button); }));
  click(".grade-option", (b) => select(b.dataset.grade));
  click(".reason-option", (b) => submitCannotJudge(b.dataset.reason));
  click("#btn-submit", () => submit());
  click("#btn-undo", () => undo());
  click("#btn-cannot-judge", () => { if (state.choosingReason) closeReasons(); else openReasons(); });

  if (firstClip) { state.mode = "queue"; show(firstClip); } else { showEmpty(); }
})();
