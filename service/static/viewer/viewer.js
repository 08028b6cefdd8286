"use strict";
// The RedSeg viewer: uploads a photograph to POST /segment and shows the lesion masks over it.
// No build step and no external assets: everything comes from this server.

// Each lesion's name and colour, as on the server's overlay.png (model/screening/overlay.py).
const LESIONS = {
  MA: { name: "microaneurysms", colour: [255, 255, 0] },
  HE: { name: "haemorrhages", colour: [0, 255, 255] },
  EX: { name: "hard exudates", colour: [0, 255, 0] },
  SE: { name: "soft exudates", colour: [255, 0, 255] },
};
const MAX_ZOOM = 16;
const $ = (id) => document.getElementById(id);
const view = { scale: 1, x: 0, y: 0, width: 0, height: 0 };
let objectUrls = [];
let lastFile = null;
let ticker = null;

// ---- status line -------------------------------------------------------------------------------

function setStatus(state, text, progress) {
  $("status").dataset.state = state;
  $("retry").hidden = state !== "error" || !lastFile;
  $("message").textContent = text;
  const bar = $("progress");
  bar.hidden = progress === undefined;
  if (progress === null) bar.removeAttribute("value");
  else if (progress !== undefined) bar.value = progress;
}

function stopTicker() {
  clearInterval(ticker);
  ticker = null;
}

function errorMessage(status, detail, retryAfter) {
  switch (status) {
    case 401:
      $("token-box").open = true;
      return `This server needs an API token: enter it under "API token" and choose the photograph again. (${detail})`;
    case 413:
      return `The photograph is too large for this server: ${detail}`;
    case 415:
      return `Not a supported image: ${detail}. Use a JPEG, PNG, TIFF, BMP or DICOM photograph.`;
    case 503:
      return `The server is busy or not ready (${detail}). Try again in ${retryAfter || "a few"} s.`;
    case 400:
    case 422:
      return `The server could not use this upload: ${detail}`;
    case 500:
      return `The model failed on this photograph: ${detail}`;
    default:
      return `Error ${status}: ${detail}`;
  }
}

// ---- upload ------------------------------------------------------------------------------------

function upload(file) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/segment?outputs=masks,probabilities");
    const token = $("token").value.trim();
    if (token) xhr.setRequestHeader("Authorization", `Bearer ${token}`);
    xhr.upload.onprogress = (event) => {
      if (event.lengthComputable) setStatus("busy", `Uploading ${file.name}: ${Math.round((100 * event.loaded) / event.total)}%`, event.loaded / event.total);
    };
    xhr.upload.onload = () => {
      const started = performance.now();
      const tick = () => setStatus("busy", `Segmenting ${file.name}: ${Math.round((performance.now() - started) / 1000)} s (the model runs on the server)`, null);
      tick();
      ticker = setInterval(tick, 500);
    };
    xhr.onload = () => resolve({ status: xhr.status, retryAfter: xhr.getResponseHeader("Retry-After"), text: xhr.responseText });
    xhr.onerror = () => reject(new Error("the server could not be reached"));
    const form = new FormData();
    form.append("image", file, file.name);
    xhr.send(form);
  });
}

function detailOf(text) {
  try {
    const detail = JSON.parse(text).detail;
    return typeof detail === "string" ? detail : JSON.stringify(detail);
  } catch {
    return text.slice(0, 200) || "no details";
  }
}

async function segmentFile(file) {
  if (!file) return;
  lastFile = file;
  clearResults();
  setStatus("busy", `Uploading ${file.name}`, 0);
  let response;
  try {
    response = await upload(file);
  } catch (error) {
    stopTicker();
    setStatus("error", `Upload failed: ${error.message}.`);
    return;
  }
  stopTicker();
  if (response.status !== 200) {
    setStatus("error", errorMessage(response.status, detailOf(response.text), response.retryAfter));
    return;
  }
  setStatus("busy", "Drawing the results", null);
  const body = JSON.parse(response.text);
  const lesions = Object.keys(body.lesions);
  showLesions(lesions);
  await showPhoto(file, body.image);
  await Promise.all(lesions.map((lesion) => drawMask(lesion, body.lesions[lesion].mask_png)));
  showSummary(body.screening, body.model);
  showDownloads(file.name, body.lesions);
  setStatus("done", `Done: ${file.name} (${body.image.width}x${body.image.height}) in ${body.timings.total_s.toFixed(1)} s.`);
}

// ---- lesions: a layer, a mask canvas and a summary row for each lesion the model segments --------

function lesionInfo(lesion) {
  return LESIONS[lesion] || { name: lesion, colour: [255, 255, 255] };
}

function element(tag, properties = {}, children = []) {
  const made = Object.assign(document.createElement(tag), properties);
  made.append(...children);
  return made;
}

function layerControl(lesion, checked) {
  const { name, colour } = lesionInfo(lesion);
  const box = element("input", { id: `show-${lesion}`, type: "checkbox", checked });
  const swatch = element("i", { className: "swatch" });
  swatch.style.background = `rgb(${colour.join(", ")})`;
  return element("label", {}, [box, " ", swatch, ` ${name} (${lesion})`]);
}

function summaryRow(lesion) {
  const cells = ["count", "area", "fraction"].map((kind) => element("td", { className: kind }));
  const row = element("tr", {}, [element("td", { textContent: lesion, title: lesionInfo(lesion).name }), ...cells]);
  row.dataset.lesion = lesion;
  return row;
}

function showLesions(lesions) {
  const shown = (lesion) => !$(`show-${lesion}`) || $(`show-${lesion}`).checked;
  $("lesion-layers").replaceChildren(...lesions.map((lesion) => layerControl(lesion, shown(lesion))));
  for (const canvas of document.querySelectorAll("#stage canvas.layer")) canvas.remove();
  // Drawn in reverse order, as overlay.png is: the first lesion (MA) on top.
  const canvases = lesions.map((lesion) => element("canvas", { id: `layer-${lesion}`, className: "layer" }));
  $("stage").append(...canvases.reverse());
  $("lesion-table").tBodies[0].replaceChildren(...lesions.map(summaryRow));
  layers();
}

function layers() {
  for (const canvas of document.querySelectorAll("#stage canvas.layer")) {
    canvas.hidden = !$(canvas.id.replace("layer-", "show-")).checked;
    canvas.style.opacity = $("opacity").value;
  }
}

// ---- drawing -----------------------------------------------------------------------------------

function pngBlob(base64) {
  return fetch(`data:image/png;base64,${base64}`).then((r) => r.blob());
}

function sizeCanvases(width, height) {
  for (const canvas of document.querySelectorAll("#stage canvas")) {
    canvas.width = width;
    canvas.height = height;
  }
  view.width = width;
  view.height = height;
  fit();
}

async function showPhoto(file, size) {
  sizeCanvases(size.width, size.height);
  const context = $("photo").getContext("2d");
  try {
    const bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
    context.drawImage(bitmap, 0, 0, size.width, size.height);
  } catch {
    context.fillStyle = "#222";
    context.fillRect(0, 0, size.width, size.height);
    $("hint").textContent = "This browser cannot display the photograph itself (TIFF or DICOM?): lesions are drawn on grey.";
  }
}

async function drawMask(lesion, base64) {
  const canvas = $(`layer-${lesion}`);
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.drawImage(await createImageBitmap(await pngBlob(base64)), 0, 0);
  const pixels = context.getImageData(0, 0, canvas.width, canvas.height);
  const data = pixels.data;
  const [r, g, b] = lesionInfo(lesion).colour;
  for (let i = 0; i < data.length; i += 4) {
    const on = data[i] > 127;
    data[i] = r;
    data[i + 1] = g;
    data[i + 2] = b;
    data[i + 3] = on ? 255 : 0;
  }
  context.putImageData(pixels, 0, 0);
}

function clearResults() {
  $("results").hidden = true;
  for (const url of objectUrls) URL.revokeObjectURL(url);
  objectUrls = [];
  $("downloads").replaceChildren();
  for (const canvas of document.querySelectorAll("#stage canvas")) canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
}

// ---- summary and downloads ---------------------------------------------------------------------

function showSummary(screening, model) {
  for (const [lesion, found] of Object.entries(screening.lesions)) {
    const row = document.querySelector(`#lesion-table tr[data-lesion="${lesion}"]`);
    if (!row) continue;
    row.querySelector(".count").textContent = found.count;
    row.querySelector(".area").textContent = found.area_pixels.toLocaleString("en");
    row.querySelector(".fraction").textContent = (100 * found.area_fraction_fov).toFixed(3);
  }
  const fov = screening.field_of_view;
  $("gradable").textContent = `Gradable field of view: ${(100 * fov.gradable_fraction).toFixed(0)}% (neither too dark nor washed out).`;
  const box = $("referral");
  box.replaceChildren();
  const referral = screening.referral;
  if (screening.quality && !screening.quality.gradable) {
    const ungradable = paragraph(`Ungradable: ${screening.quality.reasons.join(", ")}. Retake the photograph.`);
    ungradable.className = "score ungradable";
    ungradable.id = "ungradable";
    box.append(ungradable, paragraph("No referral decision is made on an ungradable photograph."));
  } else if (!referral) {
    box.append(paragraph(`No referral score: ${screening.note}`));
  } else {
    const verdict = referral.refer ? "at or above the referral point: refer" : "below the referral point";
    const score = paragraph(`Referral score ${referral.score.toFixed(2)}`);
    score.className = `score ${referral.refer ? "refer" : "below"}`;
    score.id = "referral-score";
    box.append(score, paragraph(`${verdict} (operating point ${referral.operating_point.toFixed(2)})`));
    const v = referral.validation || {};
    if (v.roc_auc !== undefined) {
      const ci = v.roc_auc_ci95 ? ` (95% CI ${v.roc_auc_ci95[0].toFixed(2)}-${v.roc_auc_ci95[1].toFixed(2)})` : "";
      box.append(paragraph(`Validated on ${v.data}: ROC AUC ${v.roc_auc.toFixed(2)}${ci}, sensitivity ${v.sensitivity.toFixed(2)}, specificity ${v.specificity.toFixed(2)} for ${v.target}.`));
    }
    const i = v.independent;
    const independent = i ? `; on ${i.data}, measured ${i.measured}: ROC AUC ${i.roc_auc.toFixed(2)}, sensitivity ${i.sensitivity.toFixed(2)}, specificity ${i.specificity.toFixed(2)}` : ", by cross-validation only";
    const validation = paragraph(`The score is validated on one camera (IDRiD)${independent}.`);
    validation.id = "referral-validation";
    box.append(validation);
  }
  if (screening.macular_oedema) showOedemaRisk(box, screening.macular_oedema);
  $("disclaimer").textContent = screening.disclaimer;
  $("results").hidden = false;
}

function showOedemaRisk(box, risk) {
  const verdict = risk.at_risk
    ? "at risk: hard exudates suggest a risk of macular oedema"
    : "below the risk point: the hard exudates found do not suggest a risk of macular oedema";
  const score = paragraph(`Macular oedema risk ${risk.score.toFixed(2)}`);
  score.className = `score ${risk.at_risk ? "refer" : "below"}`;
  score.id = "oedema-risk";
  box.append(score, paragraph(`${verdict} (operating point ${risk.operating_point.toFixed(2)}).`));
  const v = risk.validation || {};
  const auc = v.roc_auc !== undefined ? `ROC AUC ${v.roc_auc.toFixed(2)}` : "not validated";
  const ci = v.roc_auc_ci95 ? ` (95% CI ${v.roc_auc_ci95[0].toFixed(2)}-${v.roc_auc_ci95[1].toFixed(2)})` : "";
  const rates = v.sensitivity !== undefined ? `, sensitivity ${v.sensitivity.toFixed(2)}, specificity ${v.specificity.toFixed(2)}` : "";
  const validation = paragraph(`An aid, not a DME grading: ${auc}${ci}${rates} for ${v.target || "a risk of macular oedema"}, by cross-validation on one camera (IDRiD).`);
  validation.id = "oedema-validation";
  box.append(validation);
}

function paragraph(text) {
  const p = document.createElement("p");
  p.textContent = text;
  return p;
}

async function showDownloads(fileName, lesions) {
  const stem = fileName.replace(/\.[^.]+$/, "");
  for (const [lesion, result] of Object.entries(lesions)) {
    for (const [key, kind, label] of [["mask_png", "mask", "mask (0/255)"], ["probability_png", "prob", "probability map (16-bit, p x 65535)"]]) {
      if (!result[key]) continue;
      const url = URL.createObjectURL(await pngBlob(result[key]));
      objectUrls.push(url);
      const link = document.createElement("a");
      link.href = url;
      link.download = `${stem}_${lesion}_${kind}.png`;
      link.textContent = `${lesion} ${label}`;
      const item = document.createElement("li");
      item.append(link);
      $("downloads").append(item);
    }
  }
}

// ---- zoom and pan ------------------------------------------------------------------------------

function apply() {
  const stage = $("stage");
  stage.style.transform = `translate(${view.x}px, ${view.y}px) scale(${view.scale})`;
  stage.classList.toggle("pixelated", view.scale >= 2);
}

function fitScale() {
  const box = $("viewport").getBoundingClientRect();
  return view.width ? Math.min(box.width / view.width, box.height / view.height) : 1;
}

function fit() {
  const box = $("viewport").getBoundingClientRect();
  view.scale = fitScale();
  view.x = (box.width - view.width * view.scale) / 2;
  view.y = (box.height - view.height * view.scale) / 2;
  apply();
}

function zoomAt(factor, cx, cy) {
  const scale = Math.min(MAX_ZOOM, Math.max(fitScale() / 2, view.scale * factor));
  view.x = cx - ((cx - view.x) * scale) / view.scale;
  view.y = cy - ((cy - view.y) * scale) / view.scale;
  view.scale = scale;
  apply();
}

function zoomAtCentre(factor) {
  const box = $("viewport").getBoundingClientRect();
  zoomAt(factor, box.width / 2, box.height / 2);
}

function wireViewport() {
  const viewport = $("viewport");
  viewport.addEventListener("wheel", (event) => {
    event.preventDefault();
    const box = viewport.getBoundingClientRect();
    zoomAt(Math.exp(-event.deltaY * 0.0015), event.clientX - box.left, event.clientY - box.top);
  }, { passive: false });
  let drag = null;
  viewport.addEventListener("pointerdown", (event) => {
    drag = { x: event.clientX - view.x, y: event.clientY - view.y };
    viewport.setPointerCapture(event.pointerId);
    viewport.classList.add("dragging");
  });
  viewport.addEventListener("pointermove", (event) => {
    if (!drag) return;
    view.x = event.clientX - drag.x;
    view.y = event.clientY - drag.y;
    apply();
  });
  const end = () => {
    drag = null;
    viewport.classList.remove("dragging");
  };
  viewport.addEventListener("pointerup", end);
  viewport.addEventListener("pointercancel", end);
  $("fit").onclick = fit;
  $("actual").onclick = () => zoomAtCentre(1 / view.scale);
  $("zoom-in").onclick = () => zoomAtCentre(1.5);
  $("zoom-out").onclick = () => zoomAtCentre(1 / 1.5);
  window.addEventListener("resize", fit);
}

// ---- controls ----------------------------------------------------------------------------------

function wireControls() {
  $("file").addEventListener("change", (event) => segmentFile(event.target.files[0]));
  $("retry").onclick = () => segmentFile(lastFile);
  for (const target of [$("drop"), $("viewport")]) {
    target.addEventListener("dragover", (event) => {
      event.preventDefault();
      $("drop").classList.add("over");
    });
    target.addEventListener("dragleave", () => $("drop").classList.remove("over"));
    target.addEventListener("drop", (event) => {
      event.preventDefault();
      $("drop").classList.remove("over");
      segmentFile(event.dataTransfer.files[0]);
    });
  }
  for (const id of ["lesion-layers", "opacity"]) $(id).addEventListener("input", layers);
  const token = $("token");
  token.value = sessionStorage.getItem("redseg-token") || "";
  token.addEventListener("change", () => sessionStorage.setItem("redseg-token", token.value.trim()));
}

wireControls();
wireViewport();
