// One face, a button for another, a permalink per face. Image URLs carry a seed, so the
// server can let browsers cache them; a fresh seed comes from the browser's CSPRNG.
"use strict";
(function () {
  const app = document.getElementById("app");
  const face = document.getElementById("face");
  const state = {
    seed: Number(app.dataset.seed),
    psi: app.dataset.psi,
    cls: app.dataset.class,
  };
  const classes = Number(app.dataset.classes);
  const truncates = app.dataset.truncates === "true";
  document.getElementById("psi-control").hidden = !truncates;
  document.getElementById("class-control").hidden = classes === 0;

  function query() {
    const q = new URLSearchParams({ seed: String(state.seed) });
    if (truncates) q.set("psi", state.psi);
    if (classes > 0) q.set("class", state.cls);
    return q.toString();
  }

  function show(push) {
    const q = query();
    face.src = "/api/image?" + q;
    face.alt = "a generated image, seed " + state.seed;
    document.getElementById("seed").textContent = String(state.seed);
    document.getElementById("permalink").href = "/?" + q;
    document.getElementById("psi-value").textContent = state.psi;
    if (push) history.pushState({ ...state }, "", "/?" + q);
    else history.replaceState({ ...state }, "", "/?" + q);
  }

  document.getElementById("another").addEventListener("click", function () {
    state.seed = crypto.getRandomValues(new Uint32Array(1))[0];
    show(true);
  });
  document.getElementById("psi").addEventListener("change", function (e) {
    state.psi = e.target.value;
    show(false);
  });
  document.getElementById("class").addEventListener("change", function (e) {
    const k = Math.trunc(Number(e.target.value));
    if (k >= 0 && k < classes) { state.cls = String(k); show(false); }
  });
  window.addEventListener("popstate", function (e) {
    if (e.state) { Object.assign(state, e.state); show(false); }
  });
})();
