// cnn serve: the drawing pad, live predictions, the 28x28 input, feature maps and the
// arithmetic of one value. Everything is computed by the server's JSON API; this file draws.
"use strict";

const $ = (selector) => document.querySelector(selector);
const pad = $("#pad");
const ink = pad.getContext("2d");
const PREDICT_DELAY = 120; // ms after the last stroke change: live, but not one request per event
const MAPS_DELAY = 350; // feature maps are slower (Keras): only once the drawing rests

const state = {
  source: "empty", // "empty", "drawing", "picture" (an upload) or "test" (a test digit)
  blob: null, // the picture sent for the current prediction
  testIndex: null,
  answer: null, // the last /api/predict or /api/test answer
  classNames: [...Array(10).keys()].map(String),
  sequence: 0, // answers to older requests than the newest are dropped
  inFlight: false,
  again: false,
  mapsSequence: 0,
  layers: [],
  model: null,
};

// --- talking to the server -------------------------------------------------------------------

async function api(path, options = {}) {
  const response = await fetch(path, options);
  let data;
  try {
    data = await response.json();
  } catch (error) {
    throw new Error(`${path}: the server answered ${response.status} without JSON`);
  }
  if (!response.ok) {
    const error = new Error(data.error || `${path}: ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return data;
}

function postJSON(path, value) {
  return api(path, {method: "POST", headers: {"Content-Type": "application/json"},
                    body: JSON.stringify(value)});
}

function say(text, isError = false) {
  const box = $("#message");
  box.textContent = text || "";
  box.classList.toggle("error", Boolean(isError));
}

// --- the drawing pad -------------------------------------------------------------------------

function clearPad() {
  ink.fillStyle = "#ffffff";
  ink.fillRect(0, 0, pad.width, pad.height);
}

function padPoint(event) {
  const box = pad.getBoundingClientRect();
  return {x: (event.clientX - box.left) * pad.width / box.width,
          y: (event.clientY - box.top) * pad.height / box.height};
}

function stroke(from, to, pressure) {
  // MNIST strokes are about a tenth of the digit's height; a pen's pressure thins or thickens it.
  const width = pad.width * 0.075 * (pressure > 0 && pressure !== 0.5 ? 0.6 + pressure * 0.8 : 1);
  ink.strokeStyle = "#111111";
  ink.fillStyle = "#111111";
  ink.lineWidth = width;
  ink.lineCap = "round";
  ink.lineJoin = "round";
  ink.beginPath();
  ink.moveTo(from.x, from.y);
  ink.lineTo(to.x, to.y);
  ink.stroke();
}

let last = null;
let activePointer = null;

function startStroke(event) {
  if (event.button > 0 || activePointer !== null) return;
  event.preventDefault();
  activePointer = event.pointerId;
  try { pad.setPointerCapture(event.pointerId); } catch (error) { /* synthetic pointers */ }
  if (state.source !== "drawing") { // a picture or test digit on the pad: start afresh
    clearPad();
    setSource("drawing");
  }
  $("#pad-hint").hidden = true;
  last = padPoint(event);
  stroke(last, last, event.pressure);
  drawingChanged();
}

function moveStroke(event) {
  if (event.pointerId !== activePointer) return;
  event.preventDefault();
  const events = event.getCoalescedEvents && event.getCoalescedEvents().length
    ? event.getCoalescedEvents() : [event];
  for (const each of events) {
    const point = padPoint(each);
    stroke(last, point, each.pressure);
    last = point;
  }
  drawingChanged();
}

function endStroke(event) {
  if (event.pointerId !== activePointer) return;
  activePointer = null;
  last = null;
  drawingChanged(0);
}

let predictTimer = null;
function drawingChanged(delay = PREDICT_DELAY) {
  clearTimeout(predictTimer);
  predictTimer = setTimeout(predictPad, delay);
}

function padBlob() {
  return new Promise((resolve) => pad.toBlob(resolve, "image/png"));
}

async function predictPad() {
  if (state.source !== "drawing") return;
  if (state.inFlight) { // one request at a time; the newest drawing goes next
    state.again = true;
    return;
  }
  state.inFlight = true;
  try {
    await predictPicture(await padBlob());
  } finally {
    state.inFlight = false;
    if (state.again) {
      state.again = false;
      predictPad();
    }
  }
}

// --- predictions ----------------------------------------------------------------------------

async function predictPicture(blob) {
  const mine = ++state.sequence;
  state.blob = blob;
  try {
    const answer = await api("/api/predict", {method: "POST", body: blob,
                                              headers: {"Content-Type": blob.type || "image/png"}});
    if (mine !== state.sequence) return;
    show(answer);
  } catch (error) {
    if (mine !== state.sequence) return;
    showNothing(error.status === 422 ? `${error.message}` : error.message, true);
  }
}

async function showTest(path) {
  const mine = ++state.sequence;
  try {
    const answer = await api(path);
    if (mine !== state.sequence) return;
    state.blob = null;
    state.testIndex = answer.index;
    $("#test-index").value = answer.index;
    drawDigitOnPad(answer.input);
    setSource("test", `Test digit ${answer.index} of the test set, true label ${answer.label_name}.`);
    show(answer);
  } catch (error) {
    if (mine === state.sequence) say(error.message, true);
  }
}

function show(answer) {
  state.answer = answer;
  const names = state.classNames;
  $("#predicted").textContent = answer.class_name;
  $("#predicted").classList.remove("empty");
  $(".verdict").classList.toggle("long", answer.class_name.length > 2); // not a digit: a word
  const runnersUp = answer.top3.slice(1).map((t) => `${t.class_name} ${percent(t.probability)}`);
  $("#confidence").textContent = `${percent(answer.probability)} sure; then ${runnersUp.join(", ")}`;
  const truth = $("#truth");
  truth.className = "";
  truth.textContent = "";
  if (answer.label !== undefined) {
    truth.textContent = answer.correct ? `True label ${answer.label_name}: right`
                                       : `True label ${answer.label_name}: wrong`;
    truth.className = answer.correct ? "right" : "wrong";
  }
  drawBars(answer.probabilities, answer.predicted, names);
  drawSeen(answer.input);
  $("#download-png").disabled = false;
  $("#download-values").disabled = false;
  say("");
  scheduleMaps();
}

function showNothing(message, isError = false) {
  state.answer = null;
  $("#predicted").textContent = "?";
  $("#predicted").classList.add("empty");
  $(".verdict").classList.remove("long");
  $("#confidence").textContent = "Draw a digit to see what the model makes of it.";
  $("#truth").textContent = "";
  drawBars(null, null, state.classNames);
  const seen = $("#seen").getContext("2d");
  seen.clearRect(0, 0, 28, 28);
  $("#download-png").disabled = true;
  $("#download-values").disabled = true;
  $("#maps").replaceChildren();
  $("#explain").hidden = true;
  say(message, isError);
}

function percent(p) {
  if (p < 0.001) return "<0.1%";
  if (p > 0.999) return ">99.9%";
  return `${(p * 100).toFixed(1)}%`;
}

function drawBars(probabilities, predicted, names) {
  const list = $("#bars");
  if (list.dataset.names !== JSON.stringify(names)) { // another model's classes: new rows
    list.dataset.names = JSON.stringify(names);
    list.replaceChildren(...names.map((name) => {
      const item = document.createElement("li");
      item.innerHTML = '<span class="name"></span><span class="track"><span class="fill">' +
                       '</span></span><span class="pct"></span>';
      item.querySelector(".name").textContent = name;
      return item;
    }));
  }
  [...list.children].forEach((item, k) => {
    const p = probabilities ? probabilities[k] : 0;
    item.querySelector(".fill").style.width = `${(p * 100).toFixed(2)}%`;
    item.querySelector(".pct").textContent = probabilities ? percent(p) : "";
    item.classList.toggle("top", k === predicted);
    item.dataset.probability = String(p);
    item.setAttribute("aria-label", `${names[k]}: ${probabilities ? percent(p) : "none"}`);
  });
}

function digitImage(digit) {
  const image = new ImageData(28, 28);
  digit.forEach((row, r) => row.forEach((value, c) => {
    const v = Math.round(Math.min(1, Math.max(0, value)) * 255);
    const at = 4 * (r * 28 + c);
    image.data[at] = image.data[at + 1] = image.data[at + 2] = v;
    image.data[at + 3] = 255;
  }));
  return image;
}

function drawSeen(digit) {
  $("#seen").getContext("2d").putImageData(digitImage(digit), 0, 0);
}

function drawDigitOnPad(digit) {
  // A test digit as it is: white on black, each of its pixels a 10x10 square.
  const small = document.createElement("canvas");
  small.width = small.height = 28;
  small.getContext("2d").putImageData(digitImage(digit), 0, 0);
  ink.imageSmoothingEnabled = false;
  ink.drawImage(small, 0, 0, pad.width, pad.height);
  ink.imageSmoothingEnabled = true;
  $("#pad-hint").hidden = true;
}

function setSource(source, text = "") {
  state.source = source;
  if (source !== "test") state.testIndex = null;
  $("#source").textContent = text;
}

// --- pictures: upload or drop ----------------------------------------------------------------

async function usePicture(file) {
  if (!file) return;
  setSource("picture", `Picture: ${file.name} (${Math.round(file.size / 1024)} kB), made ` +
                       "MNIST-like by the server.");
  clearPad();
  $("#pad-hint").hidden = true;
  try { // show it on the pad, fitted; the server reads the file itself, not the pad
    const bitmap = await createImageBitmap(file);
    const scale = Math.min(pad.width / bitmap.width, pad.height / bitmap.height);
    const w = bitmap.width * scale, h = bitmap.height * scale;
    ink.drawImage(bitmap, (pad.width - w) / 2, (pad.height - h) / 2, w, h);
  } catch (error) { /* the browser cannot show it; the server may still read it */ }
  await predictPicture(file);
}

function setUpDrop() {
  const zone = $("#draw-card");
  const over = (event) => { event.preventDefault(); zone.classList.add("dragging"); };
  zone.addEventListener("dragenter", over);
  zone.addEventListener("dragover", over);
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    usePicture(event.dataTransfer.files[0]);
  });
}

// --- downloads of the 28x28 input -------------------------------------------------------------

function download(blob, name) {
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = name;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

function valuesCSV(digit) {
  // The 784 values: 28 lines of 28, as numpy.loadtxt(path, delimiter=",") reads them.
  return digit.map((row) => row.map((v) => v.toFixed(6)).join(",")).join("\n") + "\n";
}

function inputName() {
  if (state.source === "test") return `test-${state.testIndex}-28x28`;
  return "digit-28x28";
}

// --- feature maps ------------------------------------------------------------------------------

let mapsTimer = null;
function scheduleMaps() {
  clearTimeout(mapsTimer);
  mapsTimer = setTimeout(loadMaps, activePointer === null ? 0 : MAPS_DELAY);
}

async function loadMaps() {
  if (!state.answer) return;
  if (activePointer !== null) return scheduleMaps(); // still drawing: maps when it rests
  const mine = ++state.mapsSequence;
  const input = state.answer.input;
  if (!state.layers.length && state.model && !state.model.keras_loaded) {
    $("#maps").replaceChildren(busy("Loading the Keras model for the feature maps (the first " +
                                     "time takes a few seconds while TensorFlow starts)…"));
  }
  try {
    const result = await postJSON("/api/features", {input});
    if (mine !== state.mapsSequence) return;
    if (state.model) state.model.keras_loaded = true;
    state.layers = result.layers;
    drawMaps(result.layers, input);
  } catch (error) {
    if (mine === state.mapsSequence) $("#maps").replaceChildren(busy(error.message));
  }
}

function textElement(tag, className, text) {
  const element = document.createElement(tag);
  element.className = className;
  element.textContent = text;
  return element;
}

function busy(text) {
  return textElement("p", "busy", text);
}

function drawMaps(layers, input) {
  const open = $("#explain").dataset.at;
  const figures = layers.map((layer) => {
    const figure = document.createElement("figure");
    figure.className = "map";
    const [h, w, c] = layer.shape;
    const caption = document.createElement("figcaption");
    caption.innerHTML = `<b>layer ${layer.index} ${layer.type}</b> ${h}&times;${w}&times;${c}` +
                        `<br><span class="muted"></span>`;
    caption.querySelector("span").textContent =
      `${layer.arithmetic}; ${layer.zero_channels} of ${c} channels all zero`;
    const frame = document.createElement("div");
    frame.className = "frame";
    const img = new Image();
    img.alt = `layer ${layer.index} ${layer.type}: ${c} feature maps of ${h}x${w}`;
    img.src = layer.png;
    img.addEventListener("load", () => {
      const scale = Math.max(1, Math.round(320 / img.naturalWidth)); // whole pixels: crisp
      figure.style.width = `${img.naturalWidth * scale}px`;
    });
    img.addEventListener("click", (event) => pick(event, img, layer, input));
    img.addEventListener("mousemove", (event) => hover(event, img, layer, figure));
    frame.appendChild(img);
    const where = document.createElement("p");
    where.className = "where";
    where.textContent = "click a value";
    figure.append(caption, frame, where);
    return figure;
  });
  $("#maps").replaceChildren(...figures);
  if (open) { // the explanation on screen follows the new drawing
    const [index, rest] = open.split(":");
    const layer = layers.find((l) => String(l.index) === index);
    if (layer) explain(layer, ...rest.split(",").map(Number), input);
  }
}

function mapPosition(event, img, layer) {
  // inspect.tile's layout: channel k at grid row k // columns, column k % columns, each tile
  // framed by a 1-pixel border.
  const px = Math.floor(event.offsetX * img.naturalWidth / img.clientWidth);
  const py = Math.floor(event.offsetY * img.naturalHeight / img.clientHeight);
  const {rows, columns, tile: [h, w], border} = layer.grid;
  const gridRow = Math.floor((py - border) / (h + border));
  const gridCol = Math.floor((px - border) / (w + border));
  const top = border + gridRow * (h + border), left = border + gridCol * (w + border);
  const row = py - top, col = px - left, channel = gridRow * columns + gridCol;
  if (gridRow < 0 || gridRow >= rows || gridCol < 0 || row >= h || col >= w || row < 0 ||
      col < 0 || channel >= layer.shape[2]) return null;
  return {row, col, channel, top, left};
}

function hover(event, img, layer, figure) {
  const at = mapPosition(event, img, layer);
  figure.querySelector(".where").textContent = at
    ? `channel ${at.channel}, row ${at.row}, column ${at.col}` : "click a value";
}

function pick(event, img, layer, input) {
  const at = mapPosition(event, img, layer);
  if (!at) return;
  explain(layer, at.row, at.col, at.channel, input);
}

function markPosition(layer, row, col, channel) {
  document.querySelectorAll(".map .marker").forEach((m) => m.remove());
  const figure = [...document.querySelectorAll(".map")][state.layers.indexOf(layer)];
  if (!figure) return;
  const img = figure.querySelector("img");
  const {columns, tile: [h, w], border} = layer.grid;
  const top = border + Math.floor(channel / columns) * (h + border) + row;
  const left = border + (channel % columns) * (w + border) + col;
  const place = () => {
    const sx = img.clientWidth / img.naturalWidth, sy = img.clientHeight / img.naturalHeight;
    const marker = document.createElement("span");
    marker.className = "marker";
    Object.assign(marker.style, {left: `${left * sx - 2}px`, top: `${top * sy - 2}px`,
                                 width: `${sx + 4}px`, height: `${sy + 4}px`});
    figure.querySelector(".frame").appendChild(marker);
  };
  if (img.complete && img.naturalWidth) place(); else img.addEventListener("load", place);
}

async function explain(layer, row, col, channel, input) {
  const at = `${layer.index}:${row},${col},${channel}`;
  const box = $("#explain");
  box.dataset.at = at;
  markPosition(layer, row, col, channel);
  try {
    const e = await postJSON("/api/explain", {input, at});
    if (box.dataset.at !== at) return;
    drawExplanation(e, input);
  } catch (error) {
    box.hidden = false;
    box.replaceChildren(busy(error.message));
  }
}

// --- one value by hand ---------------------------------------------------------------------------

function colour(value, scale, signed) {
  if (value === null || Number.isNaN(value)) return "transparent";
  const t = Math.min(1, Math.abs(value) / (scale || 1));
  if (!signed) return `rgba(79, 70, 229, ${0.08 + 0.55 * t})`;
  return value >= 0 ? `rgba(220, 38, 38, ${0.08 + 0.6 * t})` : `rgba(37, 99, 235, ${0.08 + 0.6 * t})`;
}

function tint(rgba) {
  // Over the cell's own white (style.css), so the numbers read the same in dark mode.
  return `linear-gradient(${rgba}, ${rgba})`;
}

function matrix(title, values, signed, winner) {
  const table = document.createElement("table");
  table.className = "matrix";
  const caption = table.createCaption();
  caption.textContent = title;
  const flat = values.flat().filter((v) => v !== null);
  const scale = Math.max(...flat.map(Math.abs), 1e-9);
  values.forEach((row, r) => {
    const tr = table.insertRow();
    row.forEach((value, c) => {
      const td = tr.insertCell();
      if (value === null) {
        td.className = "pad";
        td.textContent = "pad";
        return;
      }
      const shown = Math.abs(value) < 5e-4 ? 0 : value; // no "-0.000"
      td.textContent = shown.toFixed(Math.abs(shown) >= 10 ? 1 : 3);
      td.style.backgroundImage = tint(colour(value, scale, signed));
      if (winner && winner[0] === r && winner[1] === c) td.classList.add("win");
    });
  });
  return table;
}

function depthSlice(cube, k) {
  return cube.map((row) => row.map((cell) => cell[k]));
}

function withPadding(e, values) {
  // Positions outside the layer's input are zero padding: shown as "pad", not as 0.
  return values.map((row, a) => row.map((v, b) => {
    const r = e.input_rows[a], c = e.input_cols[b];
    return r < 0 || c < 0 || r >= e.input_size[0] || c >= e.input_size[1] ? null : v;
  }));
}

function op(text) {
  return textElement("span", "op", text);
}

function windowView(e, input) {
  // The first layer's input with the kernel's window on it: where this value looks.
  const view = document.createElement("canvas");
  view.width = view.height = 28 * 6;
  view.className = "window-view";
  const g = view.getContext("2d");
  const small = document.createElement("canvas");
  small.width = small.height = 28;
  small.getContext("2d").putImageData(digitImage(input), 0, 0);
  g.imageSmoothingEnabled = false;
  g.drawImage(small, 0, 0, view.width, view.height);
  g.strokeStyle = "#ff4d4f";
  g.lineWidth = 2;
  const r0 = e.input_rows[0], c0 = e.input_cols[0];
  g.strokeRect(c0 * 6, r0 * 6, e.input_cols.length * 6, e.input_rows.length * 6);
  view.setAttribute("aria-label", "the input with the kernel's window");
  return view;
}

function drawExplanation(e, input) {
  const box = $("#explain");
  box.hidden = false;
  const title = document.createElement("h3");
  title.textContent = `Layer ${e.layer} (${e.type}), row ${e.row}, column ${e.col}, ` +
                      `channel ${e.channel}`;
  const command = document.createElement("p");
  command.className = "muted small";
  command.innerHTML = "As <code></code> computes it:";
  command.querySelector("code").textContent = `cnn inspect --at ${e.at}`;
  const steps = document.createElement("div");
  steps.className = "steps";
  const sum = document.createElement("div");
  sum.className = "sum";
  const agree = Math.abs(e.value - e.actual) <= 1e-4 * Math.max(1, Math.abs(e.actual));
  const produced = `<br>The layer produced <b>${e.actual.toFixed(6)}</b> ` +
                   (agree ? '<span class="agree">(agrees)</span>' : '<span class="differ">(differs)</span>');
  if (e.type === "Conv2D") {
    const depth = e.kernel[0][0].length;
    if (e.layer === 0) steps.appendChild(windowView(e, input));
    if (depth === 1) {
      steps.append(matrix("input patch", withPadding(e, depthSlice(e.patch, 0)), false), op("×"),
                   matrix(`kernel (channel ${e.channel})`, depthSlice(e.kernel, 0), true), op("="),
                   matrix("products", withPadding(e, depthSlice(e.products, 0)), true));
    } else {
      steps.appendChild(channelSums(e.channel_sums));
    }
    const activation = e.activation === "relu" ? "ReLU" : e.activation;
    sum.innerHTML = `sum of products <b>${sumOf(e.channel_sums).toFixed(6)}</b> + bias ` +
                    `<b>${e.bias.toFixed(6)}</b> = <b>${e.total.toFixed(6)}</b><br>` +
                    `${activation}(${e.total.toFixed(6)}) = <b>${e.value.toFixed(6)}</b>` +
                    (e.activation === "relu" ? ' <span class="muted">(ReLU(x) = max(0, x))</span>' : "") +
                    produced;
  } else {
    const winner = e.winner ? [e.input_rows.indexOf(e.winner[0]), e.input_cols.indexOf(e.winner[1])] : null;
    steps.appendChild(matrix(`window on channel ${e.channel}`, e.window, false, winner));
    sum.innerHTML = (e.winner ? `max of the window = <b>${e.value.toFixed(6)}</b>`
                              : `mean of the window = <b>${e.value.toFixed(6)}</b>`) + produced;
  }
  const details = document.createElement("details");
  details.open = window.matchMedia("(min-width: 820px)").matches;
  details.innerHTML = "<summary>The same, as <code>cnn inspect --at</code> prints it</summary><pre></pre>";
  details.querySelector("pre").textContent = e.text;
  box.replaceChildren(title, command, steps, sum, details);
}

function sumOf(values) {
  return values.reduce((a, b) => a + b, 0);
}

function channelSums(sums) {
  const wrap = document.createElement("div");
  const note = document.createElement("p");
  note.className = "small muted";
  note.textContent = `The kernel spans all ${sums.length} input channels: patch · kernel for each`;
  const chips = document.createElement("div");
  chips.className = "channels";
  const scale = Math.max(...sums.map(Math.abs), 1e-9);
  sums.forEach((s, k) => {
    const chip = document.createElement("span");
    chip.textContent = `${k}: ${(Math.abs(s) < 5e-4 ? 0 : s).toFixed(3)}`;
    chip.style.backgroundImage = tint(colour(s, scale, true));
    chips.appendChild(chip);
  });
  wrap.append(note, chips);
  return wrap;
}

// --- the model -----------------------------------------------------------------------------------

function describeModel(m) {
  const parts = [];
  if (m.run_id) parts.push(`run ${m.run_id}`);
  if (m.config) parts.push(`config ${m.config}`);
  if (m.test_accuracy !== null && m.test_accuracy !== undefined) {
    parts.push(`test accuracy ${(m.test_accuracy * 100).toFixed(2)}%`);
  }
  if (m.params) parts.push(`${m.params.toLocaleString("en")} parameters`);
  if (m.backend) parts.push(m.backend === "litert" ? "LiteRT" : "Keras");
  return parts.join(" · ");
}

async function loadModel() {
  const model = await api("/api/model");
  state.model = model;
  state.classNames = model.class_names;
  $("#model-info").textContent = describeModel(model);
  drawBars(state.answer ? state.answer.probabilities : null,
           state.answer ? state.answer.predicted : null, state.classNames);
  const {models} = await api("/api/models");
  const select = $("#model-select");
  select.replaceChildren(...models.map((m) => {
    const option = document.createElement("option");
    option.value = m.id;
    const accuracy = m.test_accuracy ? ` · ${(m.test_accuracy * 100).toFixed(2)}%` : "";
    option.textContent = `${m.id}${m.config ? ` · ${m.config}` : ""}${accuracy}`;
    option.selected = m.id === model.id;
    return option;
  }));
}

async function chooseModel(id) {
  say("Loading the model…");
  try {
    await postJSON("/api/model", {id});
    state.layers = [];
    await loadModel();
    say("");
    $("#explain").hidden = true;
    delete $("#explain").dataset.at;
    if (state.source === "test") showTest(`/api/test/${state.testIndex}`);
    else if (state.blob) predictPicture(state.blob);
  } catch (error) {
    say(error.message, true);
    loadModel();
  }
}

// --- wiring ------------------------------------------------------------------------------------

function start() {
  clearPad();
  drawBars(null, null, state.classNames);
  pad.addEventListener("pointerdown", startStroke);
  pad.addEventListener("pointermove", moveStroke);
  pad.addEventListener("pointerup", endStroke);
  pad.addEventListener("pointercancel", endStroke);
  // Old mobile browsers scroll on touchmove despite touch-action: never while on the pad.
  pad.addEventListener("touchmove", (event) => event.preventDefault(), {passive: false});
  $("#clear").addEventListener("click", () => {
    ++state.sequence;
    clearPad();
    setSource("empty");
    state.blob = null;
    $("#pad-hint").hidden = false;
    showNothing("");
  });
  $("#upload").addEventListener("change", (event) => {
    usePicture(event.target.files[0]);
    event.target.value = "";
  });
  setUpDrop();
  $("#test-show").addEventListener("click", () => {
    const n = Number.parseInt($("#test-index").value, 10);
    showTest(`/api/test/${Number.isFinite(n) ? n : 0}`);
  });
  $("#test-index").addEventListener("keydown", (event) => {
    if (event.key === "Enter") $("#test-show").click();
  });
  $("#test-mistake").addEventListener("click", () => showTest("/api/test/mistake"));
  $("#download-png").addEventListener("click", () => {
    $("#seen").toBlob((blob) => download(blob, `${inputName()}.png`), "image/png");
  });
  $("#download-values").addEventListener("click", () => {
    download(new Blob([valuesCSV(state.answer.input)], {type: "text/csv"}), `${inputName()}.csv`);
  });
  $("#model-select").addEventListener("change", (event) => chooseModel(event.target.value));
  loadModel().catch((error) => say(error.message, true));
}

start();
