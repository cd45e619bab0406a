// convscope report: sortable tables, current-section highlight in the side
// navigation, and a warning when images are missing (index.html moved without
// its assets/ folder). Reads only the DOM; no data is embedded in this script.
(function () {
  "use strict";

  function cellValue(row, index) {
    var cell = row.cells[index];
    if (!cell) return { num: null, text: "" };
    var sort = cell.getAttribute("data-sort");
    var num = sort === null || sort === "" ? NaN : Number(sort);
    return { num: isNaN(num) ? null : num, text: cell.textContent.trim().toLowerCase() };
  }

  function compare(a, b) {
    // Numbers before text; empty cells last.
    if (a.num !== null && b.num !== null) return a.num - b.num;
    if (a.num !== null) return -1;
    if (b.num !== null) return 1;
    if (a.text === b.text) return 0;
    if (a.text === "") return 1;
    if (b.text === "") return -1;
    return a.text < b.text ? -1 : 1;
  }

  function sortBy(table, th, index) {
    var body = table.tBodies[0];
    if (!body) return;
    var descending = th.getAttribute("aria-sort") === "ascending";
    var heads = table.tHead.rows[0].cells;
    for (var i = 0; i < heads.length; i++) heads[i].removeAttribute("aria-sort");
    th.setAttribute("aria-sort", descending ? "descending" : "ascending");
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (r1, r2) {
      var c = compare(cellValue(r1, index), cellValue(r2, index));
      return descending ? -c : c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }

  function makeSortable(table) {
    if (!table.tHead || !table.tHead.rows.length) return;
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, index) {
      th.tabIndex = 0;
      th.title = th.title || "sort by this column";
      th.addEventListener("click", function () { sortBy(table, th, index); });
      th.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortBy(table, th, index); }
      });
    });
  }

  function highlightNavigation() {
    var links = document.querySelectorAll("#toc li a");
    var targets = [];
    links.forEach(function (a) {
      var el = document.getElementById(a.getAttribute("href").slice(1));
      if (el) targets.push({ link: a, el: el });
    });
    function update() {
      var current = targets[0];
      targets.forEach(function (t) {
        if (t.el.getBoundingClientRect().top < window.innerHeight / 3) current = t;
      });
      targets.forEach(function (t) { t.link.classList.toggle("current", t === current); });
    }
    window.addEventListener("scroll", update, { passive: true });
    update();
  }

  function checkImages() {
    var broken = Array.prototype.filter.call(document.images, function (img) {
      return img.complete && img.naturalWidth === 0;
    });
    var note = document.getElementById("broken-images");
    if (broken.length && note) {
      note.textContent = broken.length + " image(s) did not load. Keep index.html next to its assets/ folder, " +
        "or open report-standalone.html, which embeds every image.";
      note.hidden = false;
    }
  }

  document.querySelectorAll("table.sortable").forEach(makeSortable);
  highlightNavigation();
  if (document.readyState === "complete") checkImages();
  else window.addEventListener("load", checkImages);
})();
