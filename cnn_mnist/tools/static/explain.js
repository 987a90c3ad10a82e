// One value by hand: the patch, kernel and products (or the pooling window) behind one value of
// a feature map, as `cnn inspect --at` computes it.
import {$, digitImage, textElement} from "./dom.js";

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

export function drawExplanation(e, input) {
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
