// The build form's live count: what the current filters select (GET /api/dataset-preview/),
// asked again 300 ms after the last change; an answer to an older question is dropped.
"use strict";
(function () {
  const form = document.getElementById("build-form");
  const box = document.getElementById("selection-preview");
  if (!form || !box) return;
  const state = document.getElementById("preview-state");
  const FIELDS = ["min_votes", "retired_only", "created_from", "created_to",
    "exclude_cannot_judge_majority", "exclude_fast_grades", "max_rater_model_emd",
    "n_folds", "seed"];
  const LEFT_OUT = {
    clips_short: "clips cut short by a lost target (fewer frames than training reads)",
    clips_rater_model: "clips left out by the rater-model threshold",
    votes_excluded_raters: "votes of the left-out experts",
    votes_fast: "very fast grades",
    clips_too_few_votes_left: "clips with too few votes left",
  };
  let timer = null;
  let asked = 0;

  function query() {
    const params = new URLSearchParams();
    for (const name of FIELDS) {
      const input = form.elements.namedItem(name);
      if (!input) continue;
      if (input.type === "checkbox") params.set(name, input.checked ? "true" : "false");
      else if (input.value.trim() !== "") params.set(name, input.value.trim());
    }
    const raters = form.elements.namedItem("exclude_raters");
    if (raters) {
      for (const id of raters.value.split(/[\s,]+/)) if (id) params.append("exclude_raters", id);
    }
    return params;
  }

  function setText(id, value) {
    const cell = document.getElementById(id);
    if (cell) cell.textContent = String(value);
  }

  function cell(text) {
    const td = document.createElement("td");
    td.className = "num";
    td.textContent = String(text);
    return td;
  }

  function show(preview) {
    setText("preview-clips", preview.clips);
    setText("preview-votes", preview.votes);
    setText("preview-patients", preview.patients);
    setText("preview-raters", preview.raters);
    const parts = Object.entries(preview.left_out || {})
      .filter(([, n]) => n > 0).map(([key, n]) => `${n} ${LEFT_OUT[key] || key}`);
    setText("preview-left-out", parts.length ? `Left out: ${parts.join("; ")}.` : "");
    const body = box.querySelector("#preview-folds tbody");
    body.replaceChildren();
    for (const row of preview.folds) {
      const tr = document.createElement("tr");
      const th = document.createElement("td");
      th.textContent = String(row.fold);
      tr.append(th);
      for (const grade of ["A", "B", "C", "D", "E"]) tr.append(cell(row[grade]));
      tr.append(cell(row.total));
      body.append(tr);
    }
    for (const td of box.querySelectorAll("tfoot td[data-mode]")) {
      td.textContent = String(preview.modes[td.dataset.mode]);
    }
    setText("preview-total", preview.clips);
    state.className = preview.problem ? "error" : "muted";
    state.textContent = preview.problem || "Counted now; the build freezes these clips and votes.";
  }

  async function ask() {
    const mine = ++asked;
    state.className = "muted";
    state.textContent = "Counting\u2026";
    try {
      const response = await fetch(`${box.dataset.url}?${query()}`, {
        headers: { Accept: "application/json" }, credentials: "same-origin",
      });
      const body = await response.json();
      if (mine !== asked) return;
      if (!response.ok) {
        state.className = "error";
        state.textContent = typeof body.detail === "string" ? body.detail
          : Object.entries(body).map(([k, v]) => `${k}: ${[].concat(v).join(" ")}`).join("; ");
        return;
      }
      show(body);
    } catch (error) {
      if (mine !== asked) return;
      state.className = "error";
      state.textContent = "The count could not be fetched; it will be tried at the next change.";
    }
  }

  function later() {
    clearTimeout(timer);
    timer = setTimeout(ask, 300);
  }

  form.addEventListener("input", later);
  form.addEventListener("change", later);
  ask();
})();
