// Sortable tables: every header cell of a table.sortable becomes a button that sorts the body
// rows by that column (click again: the other way). A cell's data-sort value wins over its
// text; columns whose header has class "num" sort as numbers, and cells without a number
// ("—") go last either way. aria-sort on the header says the order to screen readers.
(function () {
  "use strict";

  function cellKey(row, index, numeric) {
    const cell = row.cells[index];
    if (!cell) return null;
    const raw = cell.dataset.sort !== undefined ? cell.dataset.sort : cell.textContent.trim();
    if (!numeric) return raw.toLowerCase();
    const value = parseFloat(raw.replace(/[^0-9eE+\-.]/g, ""));
    return Number.isFinite(value) ? value : null;
  }

  function sortBy(table, header, index) {
    const numeric = header.classList.contains("num");
    const ascending = header.getAttribute("aria-sort") !== "ascending";
    const body = table.tBodies[0];
    const rows = Array.from(body.rows).filter((row) => !row.classList.contains("empty-row"));
    const keyed = rows.map((row, position) => ({ row, position, key: cellKey(row, index, numeric) }));
    keyed.sort((a, b) => {
      if (a.key === null || b.key === null) {
        if (a.key === b.key) return a.position - b.position;
        return a.key === null ? 1 : -1; // no value: last in both directions
      }
      let order = 0;
      if (numeric) order = a.key - b.key;
      else order = a.key < b.key ? -1 : a.key > b.key ? 1 : 0;
      return (ascending ? order : -order) || a.position - b.position;
    });
    keyed.forEach((item) => body.appendChild(item.row));
    table.querySelectorAll("thead th").forEach((th) => th.removeAttribute("aria-sort"));
    header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  }

  document.querySelectorAll("table.sortable").forEach((table) => {
    if (!table.tHead || !table.tBodies.length) return;
    Array.from(table.tHead.rows[0].cells).forEach((header, index) => {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "sort";
      button.title = "Sort by " + header.textContent.trim();
      while (header.firstChild) button.appendChild(header.firstChild);
      header.appendChild(button);
      button.addEventListener("click", () => sortBy(table, header, index));
    });
  });
})();
