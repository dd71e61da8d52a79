/* cytoscreen slide viewer: OpenSeadragon over the server's Deep Zoom tiles, fields boxed. */
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    var data = JSON.parse(document.getElementById("viewer-data").textContent);
    var viewer = OpenSeadragon({
      id: "osd",
      prefixUrl: "/static/openseadragon/images/",
      tileSources: data.dzi,
      showNavigator: true,
      navigatorPosition: "BOTTOM_RIGHT",
      maxZoomPixelRatio: 2,
      visibilityRatio: 0.5,
      gestureSettingsMouse: {clickToZoom: false}
    });
    function rectOf(f, pad) {
      var w = f.x1 - f.x0, h = f.y1 - f.y0;
      return viewer.viewport.imageToViewportRectangle(
        f.x0 - pad * w, f.y0 - pad * h, w * (1 + 2 * pad), h * (1 + 2 * pad));
    }
    function goTo(rank) {
      var f = data.fields.filter(function (x) { return x.rank === rank; })[0];
      if (!f) { return; }
      viewer.viewport.fitBounds(rectOf(f, 1.5), false);
      Array.prototype.forEach.call(document.querySelectorAll(".fieldbox"), function (el) {
        el.classList.toggle("current", el.dataset.rank === String(rank));
      });
    }
    viewer.addHandler("open", function () {
      data.fields.forEach(function (f) {
        var el = document.createElement("div");
        el.className = "fieldbox";
        el.dataset.rank = String(f.rank);
        var tag = document.createElement("span");
        tag.textContent = String(f.rank);
        el.appendChild(tag);
        viewer.addOverlay({element: el, location: rectOf(f, 0)});
      });
      if (data.field !== null) { goTo(data.field); }
      document.body.dataset.viewerReady = "1";
    });
    Array.prototype.forEach.call(document.querySelectorAll("a.gofield"), function (a) {
      a.addEventListener("click", function (ev) { ev.preventDefault(); goTo(parseInt(a.dataset.rank, 10)); });
    });
    document.addEventListener("keydown", function (ev) {
      if (ev.key === "Escape" || ev.key === "i") { window.location.href = data.back; }
    });
  });
}());
