// Small helpers for the page's elements: no state of their own.

export const $ = (selector) => document.querySelector(selector);

export function say(text, isError = false) {
  const box = $("#message");
  box.textContent = text || "";
  box.classList.toggle("error", Boolean(isError));
}

export function textElement(tag, className, text) {
  const element = document.createElement(tag);
  element.className = className;
  element.textContent = text;
  return element;
}

export function busy(text) {
  return textElement("p", "busy", text);
}

export function digitImage(digit) {
  const image = new ImageData(28, 28);
  digit.forEach((row, r) => row.forEach((value, c) => {
    const v = Math.round(Math.min(1, Math.max(0, value)) * 255);
    const at = 4 * (r * 28 + c);
    image.data[at] = image.data[at + 1] = image.data[at + 2] = v;
    image.data[at + 3] = 255;
  }));
  return image;
}
