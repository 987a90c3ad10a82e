// The drawing pad: strokes with a mouse, a finger or a pen, pictures and test digits shown on
// it, and the line that says what is on it.
import {$, digitImage} from "./dom.js";
import {setSource, state} from "./state.js";

export const pad = $("#pad");
const ink = pad.getContext("2d");

export function clearPad() {
  ink.fillStyle = "#ffffff";
  ink.fillRect(0, 0, pad.width, pad.height);
  clearBoxes(); // they were the boxes of what was on it
}

export function setPadWidth(width, keepDrawing) {
  // The pad `width` canvas pixels wide (as tall as ever), cleared; `keepDrawing`: what was on
  // it stays, at the left (cut off on the right where the pad gets narrower).
  if (pad.width === width) return;
  const before = document.createElement("canvas");
  before.width = pad.width;
  before.height = pad.height;
  before.getContext("2d").drawImage(pad, 0, 0);
  pad.width = width; // resets the canvas and its context's settings
  clearPad();
  if (keepDrawing) ink.drawImage(before, 0, 0);
}

export function drawBoxes(answer) {
  // Each digit's box over the pad: the picture (answer.width x answer.height pixels) is shown
  // fitted and centred on the pad, as drawPictureOnPad draws it (a drawing fills it exactly);
  // percentages of the pad, so the boxes follow its displayed size.
  const scale = Math.min(pad.width / answer.width, pad.height / answer.height);
  const dx = (pad.width - answer.width * scale) / 2, dy = (pad.height - answer.height * scale) / 2;
  const percent = (v, whole) => `${(100 * v / whole).toFixed(3)}%`;
  $("#boxes").replaceChildren(...answer.digits.map((d, k) => {
    const [left, top, right, bottom] = d.box;
    const box = document.createElement("div");
    box.className = "box";
    box.style.left = percent(dx + left * scale, pad.width);
    box.style.top = percent(dy + top * scale, pad.height);
    box.style.width = percent((right - left) * scale, pad.width);
    box.style.height = percent((bottom - top) * scale, pad.height);
    box.dataset.index = String(k);
    const label = document.createElement("span");
    label.textContent = d.class_name;
    box.appendChild(label);
    return box;
  }));
}

export function clearBoxes() {
  $("#boxes").replaceChildren();
}

export function useSource(source, text = "") {
  setSource(source);
  $("#source").textContent = text;
}

function padPoint(event) {
  const box = pad.getBoundingClientRect();
  return {x: (event.clientX - box.left) * pad.width / box.width,
          y: (event.clientY - box.top) * pad.height / box.height};
}

function stroke(from, to, pressure) {
  // MNIST strokes are about a tenth of the digit's height; a pen's pressure thins or thickens it.
  const width = pad.height * 0.075 * (pressure > 0 && pressure !== 0.5 ? 0.6 + pressure * 0.8 : 1);
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

export function setUpPad(changed) {
  // `changed(delay)` is called as the drawing changes: with no delay once a stroke ends.
  const startStroke = (event) => {
    if (event.button > 0 || state.activePointer !== null) return;
    event.preventDefault();
    state.activePointer = event.pointerId;
    try { pad.setPointerCapture(event.pointerId); } catch (error) { /* synthetic pointers */ }
    if (state.source !== "drawing") { // a picture or test digit on the pad: start afresh
      clearPad();
      useSource("drawing");
    }
    $("#pad-hint").hidden = true;
    state.lastPoint = padPoint(event);
    stroke(state.lastPoint, state.lastPoint, event.pressure);
    changed();
  };
  const moveStroke = (event) => {
    if (event.pointerId !== state.activePointer) return;
    event.preventDefault();
    const events = event.getCoalescedEvents && event.getCoalescedEvents().length
      ? event.getCoalescedEvents() : [event];
    for (const each of events) {
      const point = padPoint(each);
      stroke(state.lastPoint, point, each.pressure);
      state.lastPoint = point;
    }
    changed();
  };
  const endStroke = (event) => {
    if (event.pointerId !== state.activePointer) return;
    state.activePointer = null;
    state.lastPoint = null;
    changed(0);
  };
  pad.addEventListener("pointerdown", startStroke);
  pad.addEventListener("pointermove", moveStroke);
  pad.addEventListener("pointerup", endStroke);
  pad.addEventListener("pointercancel", endStroke);
  // Old mobile browsers scroll on touchmove despite touch-action: never while on the pad.
  pad.addEventListener("touchmove", (event) => event.preventDefault(), {passive: false});
}

export function padBlob() {
  return new Promise((resolve) => pad.toBlob(resolve, "image/png"));
}

export function drawDigitOnPad(digit) {
  // A test digit as it is: white on black, each of its pixels a 10x10 square.
  const small = document.createElement("canvas");
  small.width = small.height = 28;
  small.getContext("2d").putImageData(digitImage(digit), 0, 0);
  ink.imageSmoothingEnabled = false;
  ink.drawImage(small, 0, 0, pad.width, pad.height);
  ink.imageSmoothingEnabled = true;
  $("#pad-hint").hidden = true;
}

export async function drawPictureOnPad(file) {
  clearPad();
  $("#pad-hint").hidden = true;
  try { // show it on the pad, fitted; the server reads the file itself, not the pad
    const bitmap = await createImageBitmap(file);
    const scale = Math.min(pad.width / bitmap.width, pad.height / bitmap.height);
    const w = bitmap.width * scale, h = bitmap.height * scale;
    ink.drawImage(bitmap, (pad.width - w) / 2, (pad.height - h) / 2, w, h);
  } catch (error) { /* the browser cannot show it; the server may still read it */ }
}

export function setUpDrop(dropped) {
  const zone = $("#draw-card");
  const over = (event) => { event.preventDefault(); zone.classList.add("dragging"); };
  zone.addEventListener("dragenter", over);
  zone.addEventListener("dragover", over);
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    dropped(event.dataTransfer.files[0]);
  });
}
