// Asking for a prediction: of the drawing (live, one request at a time), of a picture, or of a
// test digit; only the answer to the newest request is shown. "Read a number" sends the
// drawing or picture to /api/number instead, on a pad twice as wide.
import {api} from "./api.js";
import {$, say} from "./dom.js";
import {
  clearPad, drawDigitOnPad, drawPictureOnPad, pad, padBlob, setPadWidth, useSource,
} from "./pad.js";
import {show, showNothing, showNumber} from "./result.js";
import {isLatest, newRequest, state} from "./state.js";

const PREDICT_DELAY = 120; // ms after the last stroke change: live, but not one request per event

export function drawingChanged(delay = PREDICT_DELAY) {
  clearTimeout(state.predictTimer);
  state.predictTimer = setTimeout(predictPad, delay);
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

export async function predictPicture(blob) {
  const mine = newRequest();
  state.blob = blob;
  const number = state.numberMode;
  try {
    const answer = await api(number ? "/api/number" : "/api/predict",
                             {method: "POST", body: blob,
                              headers: {"Content-Type": blob.type || "image/png"}});
    if (!isLatest(mine)) return;
    if (number) showNumber(answer);
    else show(answer);
  } catch (error) {
    if (!isLatest(mine)) return;
    showNothing(error.status === 422 ? `${error.message}` : error.message, true);
  }
}

export async function showTest(path) {
  const mine = newRequest();
  try {
    const answer = await api(path);
    if (!isLatest(mine)) return;
    state.blob = null;
    state.testIndex = answer.index;
    $("#test-index").value = answer.index;
    drawDigitOnPad(answer.input);
    useSource("test", `Test digit ${answer.index} of the test set, true label ${answer.label_name}.`);
    show(answer);
  } catch (error) {
    if (isLatest(mine)) say(error.message, true);
  }
}

export async function usePicture(file) {
  if (!file) return;
  useSource("picture", `Picture: ${file.name} (${Math.round(file.size / 1024)} kB), made ` +
                       "MNIST-like by the server.");
  await drawPictureOnPad(file);
  await predictPicture(file);
}

export function clearAll() {
  newRequest(); // an answer still on its way is not shown
  clearPad();
  useSource("empty");
  state.blob = null;
  $("#pad-hint").hidden = false;
  showNothing("");
}

export function setNumberMode(on) {
  // Reading a number: a pad twice as wide (a drawing stays on it; going back to one digit, it
  // is cleared), an uploaded picture read again, test digits (one digit each) switched off.
  newRequest(); // an answer of the other kind still on its way is not shown
  showNothing(""); // until the answer of the new kind comes
  state.numberMode = on;
  document.body.classList.toggle("number-mode", on);
  $("#draw-title").textContent = on ? "Your number" : "Your digit";
  $("#pad-hint-text").textContent = on ? "Write a number here, digits side by side"
                                        : "Draw a digit here";
  pad.setAttribute("aria-label", on
    ? "Drawing pad: write a number, several digits side by side"
    : "Drawing pad: draw one digit with the mouse, a finger or a pen");
  for (const id of ["#test-index", "#test-show", "#test-mistake"]) $(id).disabled = on;
  const drawing = state.source === "drawing";
  setPadWidth(on ? 2 * pad.height : pad.height, on && drawing);
  if (on && drawing) {
    drawingChanged(0);
  } else if (state.source === "picture" && state.blob) {
    const picture = state.blob;
    drawPictureOnPad(picture).then(() => predictPicture(picture));
  } else {
    clearAll();
  }
}
