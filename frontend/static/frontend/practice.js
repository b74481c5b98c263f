// Practice pages: the grading keys of the expert page on a plain form. On the clip page A-E or
// 1-5 choose a grade and Enter submits it (with the time spent); on the feedback page Enter
// goes to the next clip. The player (player.js) handles space, arrows and F itself.
"use strict";
(function () {
  const form = document.getElementById("practice-form");
  const next = document.getElementById("next-clip");
  const shownAt = performance.now();
  const grades = ["A", "B", "C", "D", "E"];
  const MAX_TIME_MS = 3600000;

  function select(grade) {
    document.getElementById("grade-input").value = grade;
    document.querySelectorAll(".grade-option").forEach((button) => {
      const on = button.dataset.grade === grade;
      button.setAttribute("aria-pressed", on ? "true" : "false");
      button.classList.toggle("selected", on);
    });
  }

  function submit() {
    if (!document.getElementById("grade-input").value) {
      document.getElementById("grading-status").textContent = "Choose a grade first: A–E or 1–5.";
      return;
    }
    const spent = Math.min(MAX_TIME_MS, Math.round(performance.now() - shownAt));
    document.getElementById("time-input").value = String(spent);
    form.submit();
  }

  if (form) {
    form.addEventListener("submit", (e) => { e.preventDefault(); submit(); });
    document.querySelectorAll(".grade-option").forEach((button) =>
      button.addEventListener("click", () => { button.blur(); select(button.dataset.grade); }));
  }

  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.target.closest && e.target.closest("input, select, textarea")) return;
    if (e.key === "Enter" && e.target.closest && e.target.closest("button, a, summary")) return;
    const key = e.key.length === 1 ? e.key.toUpperCase() : e.key;
    if (!form) {
      if (key === "Enter" && next) { e.preventDefault(); next.click(); }
      return;
    }
    if (grades.includes(key)) select(key);
    else if (/^[1-5]$/.test(key)) select(grades[Number(key) - 1]);
    else if (key === "Enter") submit();
    else return;
    e.preventDefault();
  });
})();
