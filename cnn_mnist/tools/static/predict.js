// Asking for a prediction: of the drawing (live, one request at a time), of a picture, or of a
// test digit; only the answer to the newest request is shown.
import {api} from "./api.js";
import {$, say} from "./dom.js";
import {clearPad, drawDigitOnPad, drawPictureOnPad, padBlob, useSource} from "./pad.js";
import {show, showNothing} from "./result.js";
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
  try {
    const answer = await api("/api/predict", {method: "POST", body: blob,
                                              headers: {"Content-Type": blob.type || "image/png"}});
    if (!isLatest(mine)) return;
    show(answer);
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
