// One face, a button for another, a permalink per face; StyleGAN3 images also rotate and
// translate (the query's rotate and translate, as generate --rotate/--translate). Image URLs carry a seed, so the
// server can let browsers cache them; a fresh seed comes from the browser's CSPRNG.
// A network trained on label vectors takes its condition as text (the query's label=V1,V2,...)
// instead of a class.
// Sliders move the face along the server's latent directions (the query's edit=K:STRENGTH,...;
// while one is dragged the image follows, debounced). The drop zone posts an image file to
// /api/attribute and shows whether the network made it.
"use strict";
(function () {
  const app = document.getElementById("app");
  const face = document.getElementById("face");
  const state = {
    seed: Number(app.dataset.seed),
    psi: app.dataset.psi,
    cls: app.dataset.class,
    label: app.dataset.label,  // "": none (a class network renders its class)
    rotate: app.dataset.rotate,
    translate: app.dataset.translate.split(","),
    edit: parseEdit(app.dataset.edit),
  };
  const classes = Number(app.dataset.classes);
  const classNames = JSON.parse(app.dataset.classNames || "[]");
  const classSelect = document.getElementById("class");
  for (let k = 0; k < classes; k++) {  // by name where the network's data named them
    const option = document.createElement("option");
    option.value = String(k);
    option.textContent = classNames.length === classes ? classNames[k] : String(k);
    option.selected = String(k) === state.cls;
    classSelect.appendChild(option);
  }
  const truncates = app.dataset.truncates === "true";
  const moves = app.dataset.moves === "true";
  const directions = JSON.parse(app.dataset.directions);
  const strengthMax = Number(app.dataset.strengthMax);
  document.getElementById("psi-control").hidden = !truncates;
  const vectorLabels = app.dataset.labelKind === "vector";
  const labelInput = document.getElementById("label");
  document.getElementById("class-control").hidden = classes === 0 || vectorLabels;
  document.getElementById("label-control").hidden = !vectorLabels;
  document.getElementById("move-control").hidden = !moves;
  document.getElementById("translate-x").value = state.translate[0];
  document.getElementById("translate-y").value = state.translate[1];
  document.getElementById("edit-control").hidden = directions.length === 0;
  document.getElementById("attribute-control").hidden = app.dataset.attribute !== "true";

  function parseEdit(text) {  // "0:1.5,3:-2.0" -> {0: "1.5", 3: "-2.0"}
    const out = {};
    (text || "").split(",").forEach(function (part) {
      const kv = part.split(":");
      if (kv.length === 2) out[kv[0]] = kv[1];
    });
    return out;
  }

  function parseLabel(text) {  // " 0.2, 1" -> "0.2,1"; null unless `classes` finite numbers
    const parts = text.split(",").map(function (p) { return p.trim(); });
    const ok = parts.length === classes && parts.every(function (p) {
      return p !== "" && Number.isFinite(Number(p)) && Math.abs(Number(p)) <= 3.4028234663852886e38;
    });
    return ok ? parts.join(",") : null;
  }

  function editText() {  // direction order, zero strengths left out (the server's canonical form)
    return Object.keys(state.edit).map(Number).sort(function (a, b) { return a - b; })
      .filter(function (k) { return Number(state.edit[k]) !== 0; })
      .map(function (k) { return k + ":" + state.edit[k]; }).join(",");
  }

  function query() {
    const q = new URLSearchParams({ seed: String(state.seed) });
    if (truncates) q.set("psi", state.psi);
    if (state.label) q.set("label", state.label);
    else if (classes > 0) q.set("class", state.cls);
    if (moves && state.translate.some(function (v) { return Number(v) !== 0; })) {
      q.set("translate", state.translate.join(","));
    }
    if (moves && Number(state.rotate) !== 0) q.set("rotate", state.rotate);
    const edit = editText();
    if (edit) q.set("edit", edit);
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
    const snapshot = { ...state, edit: { ...state.edit } };
    if (push) history.pushState(snapshot, "", "/?" + q);
    else history.replaceState(snapshot, "", "/?" + q);
  }

  // Sliders: one per direction, labelled by its name.
  const sliders = document.getElementById("sliders");
  let pending = null;
  function showSoon() {  // while a slider is dragged: at most one image per 150 ms pause
    clearTimeout(pending);
    pending = setTimeout(function () { pending = null; show(false); }, 150);
  }
  function showNow() {
    clearTimeout(pending);
    pending = null;
    show(false);
  }
  directions.forEach(function (d) {
    const label = document.createElement("label");
    label.className = "slider";
    const name = document.createElement("span");
    name.textContent = d.name;
    const input = document.createElement("input");
    Object.assign(input, { type: "range", min: String(-strengthMax), max: String(strengthMax),
                           step: "0.1", value: state.edit[d.index] || "0" });
    input.id = "edit-" + d.index;
    input.dataset.index = String(d.index);
    const value = document.createElement("output");
    value.id = "edit-value-" + d.index;
    value.textContent = input.value;
    input.addEventListener("input", function () {
      state.edit[d.index] = input.value;
      value.textContent = input.value;
      showSoon();
    });
    input.addEventListener("change", function () {
      state.edit[d.index] = input.value;
      value.textContent = input.value;
      showNow();
    });
    label.append(name, input, value);
    sliders.append(label);
  });
  function syncSliders() {
    directions.forEach(function (d) {
      const v = state.edit[d.index] || "0";
      document.getElementById("edit-" + d.index).value = v;
      document.getElementById("edit-value-" + d.index).textContent = v;
    });
  }
  syncSliders();
  document.getElementById("reset").addEventListener("click", function () {
    state.edit = {};
    syncSliders();
    showNow();
  });

  document.getElementById("another").addEventListener("click", function () {
    state.seed = crypto.getRandomValues(new Uint32Array(1))[0];
    show(true);
  });
  document.getElementById("psi").addEventListener("change", function (e) {
    state.psi = e.target.value;
    show(false);
  });
  classSelect.addEventListener("change", function (e) {
    state.cls = e.target.value;
    state.label = "";
    show(false);
  });
  labelInput.addEventListener("change", function () {
    const label = parseLabel(labelInput.value);
    labelInput.setCustomValidity(label === null ?
      "expected " + classes + " comma-separated finite numbers" : "");
    if (label === null) {
      labelInput.reportValidity();
      return;
    }
    state.label = label;
    labelInput.value = label;
    show(false);
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
    if (e.state) {
      Object.assign(state, e.state);
      state.edit = { ...(e.state.edit || {}) };
      labelInput.value = state.label || "";
      syncSliders();
      show(false);
    }
  });

  // "Is this face real?": post the file, show the verdict, the distance and the threshold.
  const dropzone = document.getElementById("dropzone");
  const upload = document.getElementById("upload");
  const attribution = document.getElementById("attribution");
  const verdict = document.getElementById("verdict");
  const detail = document.getElementById("verdict-detail");
  const preview = document.getElementById("upload-preview");
  const maxBytes = Number(app.dataset.maxBytes);
  let busy = false;

  function report(kind, headline, text) {
    attribution.className = kind;
    verdict.textContent = headline;
    detail.textContent = text || "";
  }

  async function attribute(blob) {
    if (busy) return;
    if (blob.size > maxBytes) {
      report("error", "That file is too large.",
             "The limit is " + (maxBytes / 1048576).toFixed(0) + " MiB.");
      return;
    }
    busy = true;
    dropzone.classList.add("busy");
    upload.disabled = true;
    if (preview.src) URL.revokeObjectURL(preview.src);
    preview.src = URL.createObjectURL(blob);
    preview.hidden = false;
    report("busy", "Projecting the image into the network\u2026",
           "Searching for the latent that reproduces it; this takes a few seconds.");
    try {
      const r = await fetch("/api/attribute", {
        method: "POST", body: blob,
        headers: { "Content-Type": blob.type || "application/octet-stream" },
      });
      const body = await r.json();
      if (!r.ok) {
        report("error", r.status === 503 ? "The server is busy." : "That image was refused.",
               body.error);
        return;
      }
      const generated = body.verdict === "generated";
      report(body.verdict,
             generated ? "Generated: this network could have made it."
                       : "Real: this network did not make it.",
             body.distance_name + " distance " + body.distance.toPrecision(4) +
             (generated ? " \u2264 " : " > ") + "threshold " + body.threshold.toPrecision(4) +
             " (" + body.threshold_source + "); " + body.steps + " projection steps in " +
             body.seconds.toFixed(1) + " s.");
    } catch (e) {
      report("error", "The request failed.", String(e));
    } finally {
      busy = false;
      dropzone.classList.remove("busy");
      upload.disabled = false;
      upload.value = "";
    }
  }

  upload.addEventListener("change", function () {
    if (upload.files.length) attribute(upload.files[0]);
  });
  ["dragenter", "dragover"].forEach(function (type) {
    dropzone.addEventListener(type, function (e) {
      e.preventDefault();
      dropzone.classList.add("over");
    });
  });
  ["dragleave", "drop"].forEach(function (type) {
    dropzone.addEventListener(type, function () { dropzone.classList.remove("over"); });
  });
  dropzone.addEventListener("drop", function (e) {
    e.preventDefault();
    if (e.dataTransfer.files.length) attribute(e.dataTransfer.files[0]);
  });
  document.getElementById("try-face").addEventListener("click", async function () {
    try {
      attribute(await (await fetch(face.src)).blob());
    } catch (e) {
      report("error", "The request failed.", String(e));
    }
  });
})();
