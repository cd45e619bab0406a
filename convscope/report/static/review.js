// convscope report: the review download. Every <select class="review-pick"> under an image
// holds a decision (drop, relabel:<class>); the button writes them as review.csv
// (file,action,new_class) into a Blob and offers it for download. Offline: nothing is sent.
(function () {
  "use strict";

  function csvField(text) {
    return /[",\n]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
  }

  function decisions() {
    var seen = {};
    Array.prototype.forEach.call(document.querySelectorAll("select.review-pick"), function (sel) {
      if (sel.value) seen[sel.getAttribute("data-file")] = sel.value;
    });
    return seen;
  }

  function reviewCsv(picked) {
    var lines = ["file,action,new_class"];
    Object.keys(picked).sort().forEach(function (file) {
      var parts = picked[file].split(":");
      lines.push([csvField(file), parts[0], csvField(parts[1] || "")].join(","));
    });
    return lines.join("\n") + "\n";
  }

  function update() {
    var n = Object.keys(decisions()).length;
    var count = document.getElementById("review-count");
    if (count) count.textContent = n ? n + " decision" + (n > 1 ? "s" : "") : "no decisions yet";
  }

  function download() {
    var link = document.getElementById("review-link");
    var blob = new Blob([reviewCsv(decisions())], { type: "text/csv" });
    if (link.href) URL.revokeObjectURL(link.href);
    link.href = URL.createObjectURL(blob);
    link.hidden = false;
    link.click();
  }

  document.addEventListener("change", function (e) {
    if (e.target.classList && e.target.classList.contains("review-pick")) update();
  });
  var button = document.getElementById("review-download");
  if (button) button.addEventListener("click", download);
  // The same select under one file in two galleries stays in step.
  document.addEventListener("change", function (e) {
    if (!e.target.classList || !e.target.classList.contains("review-pick")) return;
    var file = e.target.getAttribute("data-file");
    Array.prototype.forEach.call(document.querySelectorAll("select.review-pick"), function (sel) {
      if (sel !== e.target && sel.getAttribute("data-file") === file) sel.value = e.target.value;
    });
  });
})();
