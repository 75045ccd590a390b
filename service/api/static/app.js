// Small enhancements only: every page works without this script.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const query = document.getElementById("q");

  // "/" focuses the question box, as on many search sites.
  document.addEventListener("keydown", (event) => {
    const target = event.target;
    const typing = target instanceof HTMLElement && target.closest("input, select, textarea");
    if (event.key === "/" && query && !typing && !event.ctrlKey && !event.metaKey && !event.altKey) {
      event.preventDefault();
      query.focus();
      query.select();
    }
  });

  // Show that a search is running (the page reloads with the results).
  const form = document.querySelector("form.search");
  const button = form && form.querySelector("button[type=submit]");
  if (button) {
    form.addEventListener("submit", () => {
      button.setAttribute("aria-busy", "true");
      button.textContent = "Searching…";
    });
    // Coming back with the Back button restores the page as it was left: ready again.
    window.addEventListener("pageshow", () => {
      button.removeAttribute("aria-busy");
      button.textContent = "Search";
    });
  }

  // Document view: centre the cited span and move keyboard focus to it.
  const cited = document.getElementById("cited");
  if (cited) {
    cited.scrollIntoView({ block: "center" });
    cited.focus({ preventScroll: true });
  }

  // Document view reached from a results page: go back to those results, not to an empty search.
  const back = document.querySelector("a[data-back]");
  if (back && document.referrer) {
    const from = new URL(document.referrer);
    // The search page of this document's collection: "/" or "/c/<name>/", the link's own target.
    const home = new URL(back.getAttribute("href"), location.href).pathname;
    if (from.origin === location.origin && from.pathname === home && from.searchParams.has("q")) {
      back.href = from.href;
      back.textContent = "← Back to results";
    }
  }
});
