// The model: what is served (the line under the selector) and choosing another one.
import {api, postJSON} from "./api.js";
import {$, say} from "./dom.js";
import {predictPicture, showTest} from "./predict.js";
import {drawBars} from "./result.js";
import {setModel, state} from "./state.js";

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

export async function loadModel() {
  const model = await api("/api/model");
  setModel(model);
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

export async function chooseModel(id) {
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
