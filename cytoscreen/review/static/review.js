/* cytoscreen review pages: index filters and sorting, field navigation, lightbox, marks.
   Plain script, no dependencies, works from file:// (static gallery) and from the server. */
(function () {
  "use strict";
  var $ = function (sel, root) { return (root || document).querySelector(sel); };
  var $$ = function (sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); };

  function typing(ev) {
    var t = ev.target;
    return t && (t.tagName === "INPUT" || t.tagName === "SELECT" || t.tagName === "TEXTAREA");
  }
  function toggleHelp(show) {
    var help = $("#help");
    if (help) { help.hidden = show === undefined ? !help.hidden : !show; }
  }

  /* ------------------------------------------------------------ index page */
  function initIndex(table) {
    var rows = $$("tbody tr", table);
    var outcome = "all";
    var chips = $$(".chip");
    var minScore = $("#min-score");
    var search = $("#search");
    var cursor = -1;

    function visibleRows() { return rows.filter(function (r) { return !r.hidden; }); }
    function apply() {
      var min = parseFloat(minScore.value) || 0;
      var q = (search.value || "").toLowerCase();
      rows.forEach(function (r) {
        var ok = (outcome === "all" || r.dataset.outcome === outcome) &&
          (min <= 0 || parseFloat(r.dataset.score) >= min) &&
          (!q || r.cells[0].dataset.value.toLowerCase().indexOf(q) >= 0);
        r.hidden = !ok;
      });
      $("#none-shown").hidden = visibleRows().length > 0;
    }
    chips.forEach(function (c) {
      c.addEventListener("click", function () {
        outcome = c.dataset.outcome;
        chips.forEach(function (o) { o.classList.toggle("active", o === c); });
        apply();
      });
    });
    minScore.addEventListener("input", apply);
    search.addEventListener("input", apply);

    $$("th[data-sort]", table).forEach(function (th, col) {
      th.tabIndex = 0;
      function sort() {
        var asc = th.getAttribute("aria-sort") !== "ascending";
        $$("th", table).forEach(function (o) { o.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", asc ? "ascending" : "descending");
        var kind = th.dataset.sort;
        var sorted = rows.slice().sort(function (a, b) {
          var x = a.cells[col].dataset.value, y = b.cells[col].dataset.value;
          var d = kind === "text" ? x.localeCompare(y) : parseFloat(x) - parseFloat(y);
          return asc ? d : -d;
        });
        var body = $("tbody", table);
        sorted.forEach(function (r) { body.appendChild(r); });
        rows = sorted;
      }
      th.addEventListener("click", sort);
      th.addEventListener("keydown", function (ev) { if (ev.key === "Enter") { sort(); } });
    });
    document.addEventListener("keydown", function (ev) {
      if (typing(ev) || ev.ctrlKey || ev.metaKey || ev.altKey) { return; }
      var vis = visibleRows();
      if (ev.key === "j" || ev.key === "ArrowDown") { cursor = Math.min(cursor + 1, vis.length - 1); }
      else if (ev.key === "k" || ev.key === "ArrowUp") { cursor = Math.max(cursor - 1, 0); }
      else if (ev.key === "Enter" && vis[cursor]) { window.location.href = vis[cursor].dataset.href; return; }
      else if (ev.key === "?") { toggleHelp(); return; }
      else if (ev.key === "Escape") { toggleHelp(false); return; }
      else { return; }
      ev.preventDefault();
      rows.forEach(function (r) { r.classList.remove("current"); });
      if (vis[cursor]) { vis[cursor].classList.add("current"); vis[cursor].scrollIntoView({block: "nearest"}); }
    });
  }

  /* ------------------------------------------------------------ slide page */
  function initSlide(data) {
    var cards = $$("article.field");
    var current = 0;
    var lightbox = $("#lightbox");
    var server = data.mode === "server";

    function select(i, scroll) {
      if (!cards.length) { return; }
      current = Math.max(0, Math.min(cards.length - 1, i));
      cards.forEach(function (c, k) { c.classList.toggle("current", k === current); });
      $$(".box").forEach(function (b) {
        b.classList.toggle("current", b.dataset.rank === cards[current].dataset.rank);
      });
      if (scroll !== false) { cards[current].scrollIntoView({block: "nearest", behavior: "smooth"}); }
      if (!lightbox.hidden) { openLightbox(); }
    }
    function openLightbox() {
      var card = cards[current];
      var img = $("img.fieldimg", card);
      if (!img) { return; }
      $("#lightbox-img").src = img.src;
      $("#lightbox-img").alt = img.alt;
      $("#lightbox-cap").textContent = $(".fieldinfo", card).textContent.replace(/\s+/g, " ").trim() +
        "  ·  ← → fields, Esc closes";
      lightbox.hidden = false;
    }
    function closeLightbox() { lightbox.hidden = true; }

    cards.forEach(function (c, k) {
      var img = $("img.fieldimg", c);
      if (img) { img.addEventListener("click", function () { select(k, false); openLightbox(); }); }
      c.addEventListener("click", function () { select(k, false); });
    });
    $$(".box").forEach(function (b) {
      b.addEventListener("click", function (ev) {
        ev.preventDefault();
        var k = data.ranks.indexOf(parseInt(b.dataset.rank, 10));
        select(k);
      });
    });
    lightbox.addEventListener("click", closeLightbox);

    function showMark(card, mark) {
      card.classList.remove("marked", "mark-abnormal", "mark-normal", "mark-artefact", "mark-unsure");
      var state = $(".markstate", card);
      if (mark) {
        card.classList.add("marked", "mark-" + mark.label);
        if (state) { state.textContent = mark.label + (mark.bethesda ? " · " + mark.bethesda : "") + " ✓ saved"; }
      } else if (state) { state.textContent = ""; }
    }
    function sendMark(card, label, bethesda) {
      var state = $(".markstate", card);
      var body = {slide_id: data.slide, rank: parseInt(card.dataset.rank, 10), label: label,
                  bethesda: label === "abnormal" ? bethesda : null};
      if (state) { state.textContent = "saving…"; }
      return fetch("/api/marks", {method: label ? "POST" : "DELETE",
                                  headers: {"Content-Type": "application/json"},
                                  body: JSON.stringify(body)})
        .then(function (r) {
          return r.json().then(function (j) { if (!r.ok) { throw new Error(j.error || r.statusText); } return j; });
        })
        .then(function (j) { showMark(card, j.mark); })
        .catch(function (e) { if (state) { state.textContent = "NOT saved: " + e.message; } card.classList.add("save-error"); });
    }
    if (server) {
      cards.forEach(function (c, k) {
        $$("button.mk", c).forEach(function (btn) {
          btn.addEventListener("click", function (ev) {
            ev.stopPropagation();
            select(k, false);
            sendMark(c, btn.dataset.label, $("select.bethesda", c).value);
          });
        });
      });
    }

    document.addEventListener("keydown", function (ev) {
      if (typing(ev) || ev.ctrlKey || ev.metaKey || ev.altKey) { return; }
      var k = ev.key, card = cards[current];
      if (k === "ArrowRight" || k === "j") { select(current + 1); }
      else if (k === "ArrowLeft" || k === "k") { select(current - 1); }
      else if (k === "Enter") { openLightbox(); }
      else if (k === "Escape") { closeLightbox(); toggleHelp(false); }
      else if (k === "s" && data.next) { window.location.href = data.next; }
      else if (k === "S" && data.prev) { window.location.href = data.prev; }
      else if (k === "i") { window.location.href = data.index; }
      else if (k === "?") { toggleHelp(); }
      else if (server && card && k === "v") { window.location.href = $("a.viewlink", card).href; }
      else if (server && card && k >= "1" && k <= "6") {
        var b = data.bethesda[parseInt(k, 10) - 1];
        $("select.bethesda", card).value = b;
        sendMark(card, "abnormal", b);
      }
      else if (server && card && (k === "n" || k === "a" || k === "u")) {
        sendMark(card, {n: "normal", a: "artefact", u: "unsure"}[k], null);
      }
      else if (server && card && k === "Backspace") { sendMark(card, null, null); }
      else { return; }
      ev.preventDefault();
    });
    var m = /^#field-(\d+)$/.exec(window.location.hash);
    select(m ? Math.max(0, data.ranks.indexOf(parseInt(m[1], 10))) : 0, !!m);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var table = $("#slides");
    if (table) { initIndex(table); }
    var pd = $("#page-data");
    if (pd) { initSlide(JSON.parse(pd.textContent)); }
    else if (!table) {
      document.addEventListener("keydown", function (ev) {
        if (ev.key === "?") { toggleHelp(); } else if (ev.key === "Escape") { toggleHelp(false); }
      });
    }
  });
}());
