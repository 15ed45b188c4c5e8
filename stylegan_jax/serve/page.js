// One face, a button for another, a permalink per face; StyleGAN3 images also rotate and
// translate (the query's rotate and translate, as generate --rotate/--translate). Image URLs carry a seed, so the
// server can let browsers cache them; a fresh seed comes from the browser's CSPRNG.
"use strict";
(function () {
  const app = document.getElementById("app");
  const face = document.getElementById("face");
  const state = {
    seed: Number(app.dataset.seed),
    psi: app.dataset.psi,
    cls: app.dataset.class,
    rotate: app.dataset.rotate,
    translate: app.dataset.translate.split(","),
  };
  const classes = Number(app.dataset.classes);
  const truncates = app.dataset.truncates === "true";
  const moves = app.dataset.moves === "true";
  document.getElementById("psi-control").hidden = !truncates;
  document.getElementById("class-control").hidden = classes === 0;
  document.getElementById("move-control").hidden = !moves;
  document.getElementById("translate-x").value = state.translate[0];
  document.getElementById("translate-y").value = state.translate[1];

  function query() {
    const q = new URLSearchParams({ seed: String(state.seed) });
    if (truncates) q.set("psi", state.psi);
    if (classes > 0) q.set("class", state.cls);
    if (moves && state.translate.some(function (v) { return Number(v) !== 0; })) {
      q.set("translate", state.translate.join(","));
    }
    if (moves && Number(state.rotate) !== 0) q.set("rotate", state.rotate);
    return q.toString();
  }

  function show(push) {
    const q = query();
    face.src = "/api/image?" + q;
    face.alt = "a generated image, seed " + state.seed;
    document.getElementById("seed").textContent = String(state.seed);
    document.getElementById("permalink").href = "/?" + q;
    document.getElementById("psi-value").textContent = state.psi;
    document.getElementById("rotate-value").textContent = state.rotate;
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
  document.getElementById("rotate").addEventListener("change", function (e) {
    state.rotate = e.target.value;
    show(false);
  });
  ["translate-x", "translate-y"].forEach(function (id, axis) {
    document.getElementById(id).addEventListener("change", function (e) {
      state.translate = state.translate.slice();
      state.translate[axis] = e.target.value;
      show(false);
    });
  });
  window.addEventListener("popstate", function (e) {
    if (e.state) { Object.assign(state, e.state); show(false); }
  });
})();
