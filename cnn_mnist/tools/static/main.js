// cnn serve: the drawing pad, live predictions, the 28x28 input, feature maps and the
// arithmetic of one value. Everything is computed by the server's JSON API; these modules draw.
// This one wires the page's events to them; state.js holds the page's state.
import {$, say} from "./dom.js";
import {chooseModel, loadModel} from "./model.js";
import {clearPad, setUpDrop, setUpPad} from "./pad.js";
import {clearAll, drawingChanged, setNumberMode, showTest, usePicture} from "./predict.js";
import {downloadPNG, downloadValues, drawBars, valuesCSV} from "./result.js";
import {state} from "./state.js";

// The same state object (not a copy) and the CSV maker, for the console and the browser tests.
Object.assign(window, {state, valuesCSV});

function start() {
  clearPad();
  drawBars(null, null, state.classNames);
  setUpPad(drawingChanged);
  $("#clear").addEventListener("click", clearAll);
  $("#upload").addEventListener("change", (event) => {
    usePicture(event.target.files[0]);
    event.target.value = "";
  });
  setUpDrop(usePicture);
  $("#number-mode").checked = false; // a reload may keep the box ticked: start as one digit
  $("#number-mode").addEventListener("change", (event) => setNumberMode(event.target.checked));
  $("#test-show").addEventListener("click", () => {
    const n = Number.parseInt($("#test-index").value, 10);
    showTest(`/api/test/${Number.isFinite(n) ? n : 0}`);
  });
  $("#test-index").addEventListener("keydown", (event) => {
    if (event.key === "Enter") $("#test-show").click();
  });
  $("#test-mistake").addEventListener("click", () => showTest("/api/test/mistake"));
  $("#download-png").addEventListener("click", downloadPNG);
  $("#download-values").addEventListener("click", downloadValues);
  $("#model-select").addEventListener("change", (event) => chooseModel(event.target.value));
  loadModel().catch((error) => say(error.message, true));
}

start();
