// The page's state: the one object every module reads, and the few functions that change what
// more than one module shares. No other module keeps a copy of any of it.

export const state = {
  source: "empty", // "empty", "drawing", "picture" (an upload) or "test" (a test digit)
  blob: null, // the picture sent for the current prediction
  testIndex: null,
  answer: null, // the last /api/predict or /api/test answer
  numberMode: false, // "Read a number": the pad is wide and pictures go to /api/number
  number: null, // the last /api/number answer
  chosen: 0, // reading a number: the digit whose input and feature maps are shown
  classNames: [...Array(10).keys()].map(String),
  sequence: 0, // answers to older requests than the newest are dropped
  inFlight: false,
  again: false,
  mapsSequence: 0,
  layers: [],
  model: null,
  activePointer: null, // the pointer drawing on the pad now, if any
  lastPoint: null, // where its stroke has reached
  predictTimer: null,
  mapsTimer: null,
};

export function shownInput() {
  // The 28x28 input on show (its feature maps, its downloads): the one digit's, or the number's
  // chosen digit's.
  if (state.answer) return state.answer.input;
  if (state.number && state.number.digits.length) return state.number.digits[state.chosen].input;
  return null;
}

export function setSource(source) {
  state.source = source;
  if (source !== "test") state.testIndex = null;
}

export function newRequest() {
  // A number for a request; its answer is shown only while isLatest(number) holds.
  return ++state.sequence;
}

export function isLatest(mine) {
  return mine === state.sequence;
}

export function setModel(model) {
  state.model = model;
  state.classNames = model.class_names;
}
