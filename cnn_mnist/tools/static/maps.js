// The feature maps of each convolution and pooling layer for the digit shown (reading a number,
// the chosen one), and the value a click on them picks, whose arithmetic explain.js draws.
import {postJSON} from "./api.js";
import {$, busy} from "./dom.js";
import {drawExplanation} from "./explain.js";
import {shownInput, state} from "./state.js";

const MAPS_DELAY = 350; // feature maps are slower (Keras): only once the drawing rests

export function scheduleMaps() {
  clearTimeout(state.mapsTimer);
  state.mapsTimer = setTimeout(loadMaps, state.activePointer === null ? 0 : MAPS_DELAY);
}

async function loadMaps() {
  const input = shownInput();
  if (!input) return;
  if (state.activePointer !== null) return scheduleMaps(); // still drawing: maps when it rests
  const mine = ++state.mapsSequence;
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
