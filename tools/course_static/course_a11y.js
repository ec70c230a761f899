// Accessibility fixes for what the theme and the widget manager write (tools/course_site.py;
// make site-test runs axe-core on every page and fails on serious or critical violations).
(function () {
  "use strict";
  function visible(el) { return (el.innerText || "").replace(/\s+/g, " ").trim(); }

  function fix(root) {
    // A control's accessible name must contain its visible text (WCAG 2.5.3, axe
    // label-content-name-mismatch): the search button shows "Search Ctrl+K" but is named
    // "Search"; togglebutton's summaries show "Show code cell source".
    // (an icon inside a named control is decoration: Font Awesome's SVG titles, "Light",
    // "Dark", count as its text otherwise)
    root.querySelectorAll("button[aria-label] i, a[aria-label] i").forEach(function (i) { i.setAttribute("aria-hidden", "true"); });
    root.querySelectorAll("button[aria-label] svg, a[aria-label] svg").forEach(function (svg) {
      svg.querySelectorAll("title").forEach(function (t) { t.remove(); });
      svg.removeAttribute("aria-labelledby");
      svg.removeAttribute("role");
      svg.setAttribute("aria-hidden", "true");
    });
    root.querySelectorAll("button[aria-label], summary[aria-label], a[aria-label]").forEach(function (el) {
      var label = el.getAttribute("aria-label"), text = visible(el);
      if (text && label.toLowerCase().indexOf(text.toLowerCase()) < 0) {
        el.setAttribute("aria-label", text.toLowerCase().indexOf(label.toLowerCase()) < 0 ? label + ": " + text : text);
      }
    });
    // docutils marks a reference list role=list, but its entries hold backlinks, which
    // a list may not (axe aria-required-children): a plain block of entries instead.
    root.querySelectorAll(".citation-list[role=list]").forEach(function (el) { el.removeAttribute("role"); });
    // ipywidgets' sliders: the handle is the focusable control; name it by the widget's label.
    root.querySelectorAll(".noUi-handle[role=slider]:not([aria-label])").forEach(function (el) {
      var widget = el.closest(".widget-slider, .jupyter-widgets");
      var label = widget && widget.querySelector(".widget-label");
      el.setAttribute("aria-label", (label && visible(label)) || "slider");
    });
    // A figure a widget draws has no alt text of its own; it is the interactive version of
    // the static figure of its cell (whose alt text the chapter writes), so it says so.
    root.querySelectorAll(".jupyter-widgets img:not([alt]), .jp-RenderedImage img:not([alt])").forEach(function (img) {
      var cell = img.closest("div.cell");
      var still = cell && Array.prototype.find.call(cell.querySelectorAll("img[alt]"), function (i) {
        return !i.closest(".jupyter-widgets, .jp-RenderedImage") && i.alt.length >= 20;
      });
      img.setAttribute("alt", "Interactive figure, redrawn as the controls beside it change" +
                       (still ? ". The static figure of this cell: " + still.alt : "; the static figure next to it shows the same."));
    });
  }

  function start() {
    fix(document);
    // widgets render later: look again (once per burst of changes) when the page changes
    var pending = null;
    new MutationObserver(function () {
      if (pending === null) pending = setTimeout(function () { pending = null; fix(document); }, 50);
    }).observe(document.body, {childList: true, subtree: true});
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start); else start();
})();
