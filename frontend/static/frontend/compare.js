// The compare page: the grading page's frame-exact player replays the clip of any row.
"use strict";

(function () {
  const players = JSON.parse(document.getElementById("compare-players").textContent);
  const player = setupPlayer({ data: players[0], autoplay: false });
  const title = document.getElementById("replay-clip");
  const rows = document.querySelectorAll("#compare-table tr[data-clip]");
  document.querySelectorAll("#compare-table button.replay").forEach((button) => {
    button.addEventListener("click", () => {
      const index = Number(button.dataset.index);
      const data = players[index];
      rows.forEach((row, i) => row.classList.toggle("replaying", i === index));
      title.textContent = data.clipId;
      // The play button, not player.play(): it keeps its label in step.
      player.loadClip(data).then(() => document.getElementById("btn-play").click()).catch(() => {});
      button.blur();
    });
  });
})();
