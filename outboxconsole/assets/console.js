// The console's one script: the overview follows the server's stream, and
// a list's "select all" box ticks the page's boxes. Every page works
// without it; forms post to the server, which confirms each action.
"use strict";

(function () {
  const overview = document.getElementById("overview");
  if (overview && window.EventSource) {
    const es = new EventSource(overview.dataset.stream);
    es.addEventListener("overview", (e) => {
      // The fragment is HTML the server rendered with html/template.
      overview.innerHTML = e.data;
      overview.classList.remove("stale");
    });
    es.onerror = () => overview.classList.add("stale");
  }

  const all = document.getElementById("select-all");
  if (all) {
    all.addEventListener("change", () => {
      for (const box of document.querySelectorAll("input.sel")) box.checked = all.checked;
    });
  }
})();
