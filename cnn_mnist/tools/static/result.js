// The prediction view: the verdict, the bars, the 28x28 input the model sees and its downloads;
// or, reading a number, the number and each of its digits (their boxes drawn over the pad), one
// of them chosen for "what the model sees" and the feature maps.
import {$, digitImage, say} from "./dom.js";
import {scheduleMaps} from "./maps.js";
import {clearBoxes, drawBoxes} from "./pad.js";
import {shownInput, state} from "./state.js";

export function show(answer) {
  state.answer = answer;
  clearNumber();
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

export function showNumber(answer) {
  // An /api/number answer: the number large, each digit with its probability and 28x28 input.
  state.answer = null; // no one digit: no bars; the chosen digit's input and feature maps
  state.number = answer;
  $("#predicted").textContent = answer.number;
  $("#predicted").classList.remove("empty");
  $(".verdict").classList.remove("long");
  $(".verdict").classList.add("number");
  const count = answer.digits.length;
  const least = Math.min(...answer.digits.map((d) => d.probability));
  $("#confidence").textContent = `${count} digit${count === 1 ? "" : "s"}, left to right; ` +
                                 `the least sure ${percent(least)}`;
  $("#truth").textContent = "";
  $("#truth").className = "";
  $("#digits").replaceChildren(...answer.digits.map(digitItem));
  $("#digits").hidden = false;
  drawBoxes(answer);
  say("");
  if (count) {
    chooseDigit(Math.min(state.chosen, count - 1)); // the same place, as the drawing grows
  } else {
    $("#maps").replaceChildren();
    $("#explain").hidden = true;
  }
}

function chooseDigit(k) {
  state.chosen = k;
  [...$("#digits").children].forEach((item, n) => {
    item.firstChild.setAttribute("aria-pressed", String(n === k));
  });
  drawSeen(shownInput());
  $("#download-png").disabled = false;
  $("#download-values").disabled = false;
  scheduleMaps();
}

function digitItem(d, k) {
  const item = document.createElement("li");
  item.dataset.index = String(k);
  const choose = document.createElement("button");
  choose.type = "button";
  choose.title = "Show what the model sees of this digit, and its feature maps";
  choose.addEventListener("click", () => chooseDigit(k));
  const seen = document.createElement("canvas");
  seen.width = seen.height = 28;
  seen.setAttribute("aria-label", `digit ${k + 1} as the model sees it (28x28)`);
  seen.getContext("2d").putImageData(digitImage(d.input), 0, 0);
  const name = document.createElement("b");
  name.textContent = d.class_name;
  const sure = document.createElement("span");
  sure.className = "pct";
  sure.textContent = percent(d.probability);
  choose.append(seen, name, sure);
  item.append(choose);
  return item;
}

function clearNumber() {
  state.number = null;
  state.chosen = 0;
  $(".verdict").classList.remove("number");
  $("#digits").replaceChildren();
  $("#digits").hidden = true;
  clearBoxes();
}

export function showNothing(message, isError = false) {
  state.answer = null;
  clearNumber();
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

export function drawBars(probabilities, predicted, names) {
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

function drawSeen(digit) {
  $("#seen").getContext("2d").putImageData(digitImage(digit), 0, 0);
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

export function valuesCSV(digit) {
  // The 784 values: 28 lines of 28, as numpy.loadtxt(path, delimiter=",") reads them.
  return digit.map((row) => row.map((v) => v.toFixed(6)).join(",")).join("\n") + "\n";
}

function inputName() {
  if (state.source === "test") return `test-${state.testIndex}-28x28`;
  if (state.number) return `digit-${state.chosen + 1}-of-${state.number.number}-28x28`;
  return "digit-28x28";
}

export function downloadPNG() {
  $("#seen").toBlob((blob) => download(blob, `${inputName()}.png`), "image/png");
}

export function downloadValues() {
  download(new Blob([valuesCSV(shownInput())], {type: "text/csv"}), `${inputName()}.csv`);
}
