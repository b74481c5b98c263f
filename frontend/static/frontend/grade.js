// The expert's grading page: one clip at a time, keyboard first, through the grading API.
// Modes: "queue" (a clip from the queue), "revisit" (an earlier grade reopened with U to change
// it), "empty" (nothing left). The panel's votes appear only in answers to our own grades.
// One keydown handler, on the document in the capture phase, owns every shortcut: a focused
// speed or zoom select cannot eat them; only a text box (the "other" note) keeps its keys.
// Overlays (field guide, tutorial) are modal: Esc closes them, other shortcuts wait.
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
    typingNote: false, // the "other" reason's note box is open
    overlay: null, // "guide" or "tutorial" while one is open
    busy: false,
  };
  const MARKER_KEY = "mersv.grading.targetMarker";
  const TUTORIAL_KEY = `mersv.grading.tutorialSeen.${config.account}`;
  // localStorage can be off (private modes, policies): the page then just forgets.
  const remembered = {
    get(key) { try { return window.localStorage.getItem(key); } catch (err) { return null; } },
    set(key, value) { try { window.localStorage.setItem(key, value); } catch (err) { /* forget */ } },
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
    if (!player) player = setupPlayer({ data: playerData(clip), keyboard: false });
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
    say(`Cannot judge: press 1–${config.reasons.length} for the reason, Esc to cancel.`);
  }
  function closeReasons() {
    state.choosingReason = false;
    state.typingNote = false;
    $("cannot-judge-reasons").classList.add("hidden");
    $("cannot-judge-other").classList.add("hidden");
    if (document.activeElement === $("cannot-judge-note")) $("cannot-judge-note").blur();
  }

  // "Other" takes a few words: the note box gets the focus, so typing there is typing.
  function openNote() {
    state.choosingReason = false;
    state.typingNote = true;
    $("cannot-judge-reasons").classList.add("hidden");
    $("cannot-judge-other").classList.remove("hidden");
    $("cannot-judge-note").value = "";
    $("cannot-judge-note").focus();
    say("Other: type why you cannot judge this clip, Enter to record it, Esc to cancel.");
  }
  function submitNote() {
    const note = $("cannot-judge-note").value.trim();
    if (!note) { say("Say in a few words why you cannot judge this clip, or press Esc to cancel."); return; }
    submitCannotJudge(config.otherReason, note);
  }
  function chooseReason(reason) {
    if (reason === config.otherReason) openNote(); else submitCannotJudge(reason);
  }
  $("cannot-judge-note").addEventListener("keydown", (e) => {
    if (e.key === "Enter") { e.preventDefault(); if (!state.busy) submitNote(); }
    else if (e.key === "Escape") { e.preventDefault(); closeReasons(); say(""); }
  });

  async function submitCannotJudge(reason, note = "") {
    if (state.busy || state.mode !== "queue") return;
    state.busy = true;
    closeReasons();
    try {
      const r = await api("POST", config.urls.cannotJudge, {
        clip_id: state.clip.clip_id, reason, note, time_spent_ms: elapsed(), next: true,
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

  // --- target marker, field guide, tutorial ---------------------------------------------------

  function showMarker(on) {
    $("target-marker").classList.toggle("hidden", !on);
    remembered.set(MARKER_KEY, on ? "on" : "off");
  }
  function toggleMarker() {
    const on = $("target-marker").classList.contains("hidden");
    showMarker(on);
    say(on ? "Target marker on (T hides it)." : "Target marker off (T shows it).");
  }

  let guideLoops = [];
  function guideSection(section) {
    const node = document.createElement("section");
    node.className = "guide-section";
    node.dataset.grade = section.grade;
    const title = document.createElement("h3");
    title.textContent = `${section.grade} `;
    const description = document.createElement("span");
    description.className = "muted";
    description.textContent = section.description;
    title.appendChild(description);
    node.appendChild(title);
    if (!section.references.length) {
      const none = document.createElement("p");
      none.className = "muted";
      none.textContent = "No reference clip chosen for this grade yet.";
      node.appendChild(none);
      return node;
    }
    const row = document.createElement("div");
    row.className = "guide-clips";
    section.references.forEach((ref) => {
      const figure = document.createElement("figure");
      figure.className = "guide-clip";
      figure.dataset.clipId = ref.clip_id;
      const canvas = document.createElement("canvas");
      canvas.width = ref.crop_size;
      canvas.height = ref.crop_size;
      figure.appendChild(canvas);
      const caption = document.createElement("figcaption");
      caption.textContent = `${section.grade} · clip ${ref.clip_id}${ref.note ? ` · ${ref.note}` : ""}`;
      figure.appendChild(caption);
      row.appendChild(figure);
      guideLoops.push(new FilmstripLoop(canvas, {
        filmstrip: ref.filmstrip_url, nFrames: ref.n_frames, size: ref.crop_size, fps: ref.fps,
      }));
    });
    node.appendChild(row);
    return node;
  }

  async function openGuide() {
    state.overlay = "guide";
    $("field-guide").classList.remove("hidden");
    $("btn-field-guide-close").focus();
    const body = $("field-guide-body");
    body.textContent = "Loading…";
    let r;
    try { r = await api("GET", config.urls.fieldGuide); } catch (err) { r = { ok: false, status: 0, data: null }; }
    if (state.overlay !== "guide") return;
    body.textContent = "";
    if (!r.ok) { body.textContent = `The field guide could not be loaded: ${errorText(r)}`; return; }
    r.data.forEach((section) => body.appendChild(guideSection(section)));
    body.dataset.loaded = "true";
  }

  function openTutorial() {
    state.overlay = "tutorial";
    $("tutorial").classList.remove("hidden");
    $("btn-tutorial-close").focus();
  }

  function closeOverlay() {
    if (state.overlay === "guide") {
      guideLoops.forEach((loop) => loop.stop());
      guideLoops = [];
      $("field-guide").classList.add("hidden");
      $("field-guide-body").textContent = "";
      delete $("field-guide-body").dataset.loaded;
    } else if (state.overlay === "tutorial") {
      $("tutorial").classList.add("hidden");
      remembered.set(TUTORIAL_KEY, "seen");
    }
    state.overlay = null;
    if (document.activeElement && document.activeElement.blur) document.activeElement.blur();
  }

  // --- the keyboard ----------------------------------------------------------------------------

  function onOverlayKey(key) {
    const closes = key === "Escape"
      || (state.overlay === "guide" && key === "G")
      || (state.overlay === "tutorial" && (key === "Enter" || key === "?"));
    if (closes) closeOverlay();
    return closes;
  }

  function onPageKey(key) {
    if (key === "T") { toggleMarker(); return true; }
    if (key === "G") { openGuide(); return true; }
    if (key === "?") { openTutorial(); return true; }
    if (state.busy) return false;
    if (state.typingNote) { // the note box is open but lost the focus
      if (key === "Escape") { closeReasons(); say(""); return true; }
      if (key === "Enter") { submitNote(); return true; }
      return false;
    }
    if (state.choosingReason) {
      const n = /^[1-9]$/.test(key) ? Number(key) : 0;
      if (n >= 1 && n <= config.reasons.length) chooseReason(config.reasons[n - 1]);
      else if (key === "Escape" || key === "X") { closeReasons(); say(""); }
      else return false;
      return true;
    }
    if (key === "U") { undo(); return true; }
    if (state.mode === "empty") return false;
    if (config.grades.includes(key)) select(key);
    else if (/^[1-9]$/.test(key) && Number(key) <= config.grades.length) select(config.grades[Number(key) - 1]);
    else if (key === "Enter") submit();
    else if (key === "X") openReasons();
    else if (key === "Escape" && state.mode === "revisit") leaveRevisit();
    else return false;
    return true;
  }

  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey) return; // leave browser shortcuts alone
    if (!keyIsShortcut(e.target)) return; // typing in a text box stays typing
    const key = e.key.length === 1 ? e.key.toUpperCase() : e.key;
    let handled;
    if (state.overlay) handled = onOverlayKey(key);
    else if (e.key === "Enter" && e.target.closest && e.target.closest("button, a, summary")) return; // a focused control acts
    else handled = (player && state.mode !== "empty" && player.handleKey(e.key)) || onPageKey(key);
    if (handled) { e.preventDefault(); e.stopPropagation(); }
  }, true);

  // Mouse users: the same actions; buttons give focus back so the keys keep working.
  const click = (selector, action) => document.querySelectorAll(selector).forEach((button) =>
    button.addEventListener("click", () => { button.blur(); if (!state.busy) action(button); }));
  click(".grade-option", (b) => select(b.dataset.grade));
  click(".reason-option", (b) => chooseReason(b.dataset.reason));
  click("#btn-submit", () => submit());
  click("#btn-undo", () => undo());
  click("#btn-cannot-judge", () => { if (state.choosingReason) closeReasons(); else openReasons(); });

  click("#btn-field-guide", () => openGuide());
  click("#btn-tutorial", () => openTutorial());
  $("btn-field-guide-close").addEventListener("click", () => closeOverlay());
  $("btn-tutorial-close").addEventListener("click", () => closeOverlay());

  if (firstClip) { state.mode = "queue"; show(firstClip); } else { showEmpty(); }
  showMarker(remembered.get(MARKER_KEY) !== "off");
  if (!remembered.get(TUTORIAL_KEY)) openTutorial();
})();
