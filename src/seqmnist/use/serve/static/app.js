// seqmnist serve: draw a digit, send it to every served run, show each run's answer
// and how its belief changed while it read the image step by step.
// Plain ES2020, no build step, no libraries: the page must work offline.
"use strict";

// Stroke width as a share of the pad: MNIST strokes are about a tenth of the digit's height.
const INK_WIDTH = 20 / 280;
const INK = "#111";
const PAPER = "#fff";
// A replay takes about this long, whatever the number of steps, within these bounds per step.
const PLAY_MS = 3000;
const PLAY_STEP_MS = { min: 40, max: 160 };
const CELL_NAMES = {
  rnn: "RNN", lstm: "LSTM", gru: "GRU", lru: "LRU", mingru: "minGRU", minlstm: "minLSTM",
  cornn: "coRNN", lem: "LEM", indrnn: "IndRNN",
};
const HOW_IT_READS = {
  rows: "It reads one row per step, top to bottom.",
  columns: "It reads one column per step, left to right.",
  pixels: "It reads one pixel per step, row by row from the top left.",
  permuted: "It reads one pixel per step, in a fixed shuffled order.",
};

const state = {
  cards: [], // one per served run, in the server's order
  hasInk: false, // a blank pad is never sent (the server would answer 422)
  strokes: 0,
  inputId: 0, // each drawing or upload sent gets the next id
  clearedAt: 0, // answers for inputs up to this id arrived after Clear: dropped
  upload: null, // the name of the uploaded file the pad shows, if any
};

const $ = (selector, root = document) => root.querySelector(selector);

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function percent(probability, decimals = 0) {
  const value = probability * 100;
  if (decimals > 0 && value > 0 && value < 10 ** -decimals) return `<${10 ** -decimals}%`;
  return `${value.toFixed(decimals)}%`;
}

function setStatus(text, isError = false) {
  const status = $("#status");
  status.textContent = isError ? `Error: ${text}` : text;
  status.classList.toggle("is-error", isError);
}

// ---------------------------------------------------------------- the drawing pad

const pad = { canvas: null, context: null, pointer: null, last: null };

function setupPad() {
  pad.canvas = $("#pad");
  pad.context = pad.canvas.getContext("2d");
  clearPad();
  pad.canvas.addEventListener("pointerdown", startStroke);
  pad.canvas.addEventListener("pointermove", continueStroke);
  pad.canvas.addEventListener("pointerup", endStroke);
  pad.canvas.addEventListener("pointercancel", endStroke);
  // A long press would otherwise open a menu on touch screens.
  pad.canvas.addEventListener("contextmenu", (event) => event.preventDefault());
  $("#clear").addEventListener("click", onClear);
}

function clearPad() {
  const { context, canvas } = pad;
  // Opaque white paper, not transparency: the PNG then looks the same everywhere.
  context.fillStyle = PAPER;
  context.fillRect(0, 0, canvas.width, canvas.height);
  context.strokeStyle = INK;
  context.fillStyle = INK;
  context.lineWidth = INK_WIDTH * canvas.width;
  context.lineCap = "round";
  context.lineJoin = "round";
  state.hasInk = false;
  state.strokes = 0;
  state.upload = null;
  describePad();
}

function padPoint(event) {
  // The canvas is scaled by CSS: map from page pixels to canvas pixels.
  const box = pad.canvas.getBoundingClientRect();
  return {
    x: ((event.clientX - box.left) * pad.canvas.width) / box.width,
    y: ((event.clientY - box.top) * pad.canvas.height) / box.height,
  };
}

function startStroke(event) {
  if (pad.pointer !== null || (event.pointerType === "mouse" && event.button !== 0)) return;
  event.preventDefault();
  pad.pointer = event.pointerId;
  // Capture: a stroke that leaves the pad still ends (pointerup) where we hear it.
  pad.canvas.setPointerCapture(event.pointerId);
  pad.last = padPoint(event);
  const { context } = pad;
  context.beginPath();
  context.arc(pad.last.x, pad.last.y, context.lineWidth / 2, 0, 2 * Math.PI);
  context.fill(); // a tap leaves a dot
  state.hasInk = true;
}

function continueStroke(event) {
  if (event.pointerId !== pad.pointer) return;
  // Coalesced events keep fast strokes smooth where the browser batches moves.
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
  for (const each of events.length ? events : [event]) {
    const point = padPoint(each);
    const { context } = pad;
    context.beginPath();
    context.moveTo(pad.last.x, pad.last.y);
    context.lineTo(point.x, point.y);
    context.stroke();
    pad.last = point;
  }
}

function endStroke(event) {
  if (event.pointerId !== pad.pointer) return;
  continueStroke(event);
  pad.pointer = null;
  state.strokes += 1;
  describePad();
  sendPad();
}

function describePad() {
  const strokes = `${state.strokes} stroke(s)`;
  let text = state.hasInk ? `The pad holds your drawing: ${strokes}.` : "The pad is empty.";
  if (state.upload) {
    text = `The pad shows the uploaded image ${state.upload}` +
      (state.strokes ? `, drawn over with ${strokes}.` : ".");
  }
  $("#pad-content").textContent = text;
}

function onClear() {
  clearPad();
  state.clearedAt = state.inputId;
  for (const card of state.cards) {
    card.pending = null;
    resetCard(card);
  }
  setStatus("Cleared. Draw a digit.");
}

// ---------------------------------------------------------------- uploads and drops

function setupUpload() {
  const input = $("#file");
  input.addEventListener("change", () => {
    if (input.files.length) useFile(input.files[0]);
    input.value = ""; // choosing the same file again is a new upload
  });
  const zone = $("#drop-zone");
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("is-dragging");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("is-dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("is-dragging");
    const file = event.dataTransfer.files[0];
    if (file) useFile(file);
  });
  // A file dropped beside the pad would otherwise replace the page with the image.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());
}

async function useFile(file) {
  if (!state.cards.length) return setStatus("no model is loaded yet; wait a moment", true);
  clearPad();
  state.upload = file.name;
  state.hasInk = true; // what the file holds is the server's to judge
  describePad();
  // The file's own bytes go to the server; the pad shows it only so the user sees it. A file
  // of no stated image type goes as a form upload, which the server decodes by its content.
  if (file.type.startsWith("image/")) submit({ body: file, type: file.type, what: file.name });
  else submit({ body: formWith(file), type: null, what: file.name });
  try {
    drawOnPad(await createImageBitmap(file));
  } catch (error) {
    state.upload = `${file.name} (this browser cannot show it; it was sent as it is)`;
    describePad();
  }
}

function formWith(file) {
  const form = new FormData();
  form.append("file", file, file.name);
  return form;
}

function drawOnPad(bitmap) {
  const { canvas, context } = pad;
  const scale = Math.min(canvas.width / bitmap.width, canvas.height / bitmap.height);
  const width = bitmap.width * scale;
  const height = bitmap.height * scale;
  context.drawImage(bitmap, (canvas.width - width) / 2, (canvas.height - height) / 2,
    width, height);
  bitmap.close();
}

// ---------------------------------------------------------------- requests

function sendPad() {
  if (!state.hasInk || !state.cards.length) return;
  pad.canvas.toBlob((blob) => {
    if (blob) submit({ body: blob, type: "image/png", what: "your drawing" });
  }, "image/png");
}

function submit(input) {
  state.inputId += 1;
  input.id = state.inputId;
  setStatus(`Reading ${input.what}…`);
  for (const card of state.cards) {
    // One request per run at a time: while one is out, only the latest input waits.
    if (card.busy) card.pending = input;
    else send(card, input);
  }
}

async function send(card, input) {
  card.busy = true;
  card.root.setAttribute("aria-busy", "true");
  try {
    const answer = await postPredict(card.run.name, input);
    if (input.id > state.clearedAt) showAnswer(card, answer);
  } catch (error) {
    if (input.id > state.clearedAt) showError(card, error.message);
  }
  card.busy = false;
  const next = card.pending;
  card.pending = null;
  if (next) return send(card, next);
  card.root.removeAttribute("aria-busy");
  summarise(input);
}

async function postPredict(runName, input) {
  const url = `api/predict?run=${encodeURIComponent(runName)}&steps=true`;
  let response;
  try {
    // A form's Content-Type (with its boundary) is the browser's to set.
    const headers = input.type ? { "Content-Type": input.type } : {};
    response = await fetch(url, { method: "POST", body: input.body, headers });
  } catch (error) {
    throw new Error("cannot reach the server; is `seqmnist serve` still running?");
  }
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const detail = body && typeof body.detail === "string" ? body.detail : null;
    throw new Error(detail || `the server answered ${response.status} ${response.statusText}`);
  }
  if (!body || !Array.isArray(body.probabilities)) {
    throw new Error("the server's answer is not a prediction");
  }
  return body;
}

function summarise(input) {
  // Once every card has its answer for the latest input: all answers in one line, in the
  // live status just under the pad (on a phone the cards are a scroll away).
  if (input.id !== state.inputId || input.id <= state.clearedAt) return;
  if (state.cards.some((card) => card.busy)) return;
  const parts = state.cards.map((card) => {
    const answer = card.root.dataset.state === "ready" ? card.answer : null;
    const text = answer
      ? `${answer.label} (${percent(answer.probabilities[answer.index])})`
      : "could not read it (see its card)";
    return state.cards.length === 1 ? text : `${card.run.name}: ${text}`;
  });
  const failed = state.cards.every((card) => card.root.dataset.state === "error");
  if (failed) setStatus(`no run could read ${input.what}; see the message in each card`, true);
  const intro = state.cards.length === 1 ? "Answer: " : "";
  if (!failed) setStatus(`Read ${input.what}. ${intro}${parts.join("; ")}.`);
}

// ---------------------------------------------------------------- run cards

async function loadRuns() {
  let runs;
  try {
    const response = await fetch("api/runs");
    const body = await response.json();
    if (!response.ok) throw new Error(body.detail || `HTTP ${response.status}`);
    runs = body.runs;
  } catch (error) {
    return setStatus(`cannot load the served models (${error.message}); reload the page`, true);
  }
  const cards = $("#cards");
  document.querySelector("main").dataset.runs = runs.length; // the layout depends on it
  for (const run of runs) {
    const card = buildCard(run);
    state.cards.push(card);
    cards.append(card.root);
  }
  const names = runs.map((run) => run.name).join(", ");
  setStatus(`${runs.length === 1 ? "One model" : `${runs.length} models`} loaded (${names}). ` +
    "Draw a digit.");
  sendPad(); // something drawn while the models were loading
}

function buildCard(run) {
  const root = $("#card-template").content.firstElementChild.cloneNode(true);
  root.dataset.run = run.name;
  root.dataset.view = run.view;
  const card = { run, root, busy: false, pending: null, answer: null, step: 0, timer: null };
  $(".run-name", root).textContent = run.name;
  $(".model", root).textContent = describeModel(run);
  $(".reading-help", root).textContent = readingHelp(run);
  // With several cards, each slider and Play button says whose reading it moves.
  for (const ref of root.querySelectorAll(".run-ref")) ref.textContent = ` (${run.name})`;
  buildBars(card);
  const [height, width] = run.image_shape;
  for (const canvas of root.querySelectorAll(".seen, .unread")) {
    canvas.width = width;
    canvas.height = height;
  }
  const reading = $(".reading", root);
  reading.style.setProperty("--rows", height);
  reading.style.setProperty("--cols", width);
  reading.classList.add(`view-${run.view}`);
  const slider = $(".step-slider", root);
  slider.addEventListener("input", () => setStep(card, Number(slider.value)));
  $(".play", root).addEventListener("click", () => togglePlay(card));
  $(".steps-chart", root).addEventListener("click", (event) => {
    // Clicking a step in the chart jumps there (the slider does the same from the keyboard).
    const row = event.target.closest(".step-row");
    if (row) { stopPlay(card); setStep(card, Number(row.dataset.index)); }
  });
  return card;
}

function describeModel(run) {
  const cell = CELL_NAMES[run.cell] || run.cell;
  const parts = [
    `${run.bidirectional ? "bidirectional " : ""}${cell}, ` +
      `hidden ${run.hidden_sizes.length === 1 ? "size" : "sizes"} ${run.hidden_sizes.join(", ")}`,
    `${run.view} view (${run.steps} steps)`,
    `${run.parameters.toLocaleString("en")} parameters`,
    run.test_accuracy === null || run.test_accuracy === undefined
      ? "test accuracy: not evaluated"
      : `test accuracy ${percent(run.test_accuracy, 2)}`,
  ];
  if (run.preset && run.preset !== run.name) parts.push(`preset ${run.preset}`);
  return parts.join(" · ");
}

function readingHelp(run) {
  const how = HOW_IT_READS[run.view] || `It reads one ${run.step_name} per step.`;
  const where = run.view === "rows"
    ? " Each line of the chart is its best guess once it has read down to that row" +
      " (shaded cells: darker is more likely)."
    : " The chart shows its guess for each class after each step: darker is more likely.";
  return how + where;
}

function buildBars(card) {
  const bars = $(".bars", card.root);
  for (const name of card.run.class_names) {
    const bar = element("li", "bar");
    bar.dataset.class = name;
    const track = element("span", "bar-track");
    track.setAttribute("aria-hidden", "true");
    track.append(element("span", "bar-fill"));
    bar.append(element("span", "bar-name", name), track, element("span", "bar-value", "–"));
    bars.append(bar);
  }
}

function resetCard(card) {
  stopPlay(card);
  card.answer = null;
  card.root.dataset.state = "idle";
  $(".label", card.root).textContent = "";
  $(".confidence", card.root).textContent = "";
  $(".error", card.root).hidden = true;
  showBars(card, null);
  for (const canvas of card.root.querySelectorAll(".seen, .unread")) {
    canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
  }
  $(".seen", card.root).setAttribute("aria-label", "The image the network saw: nothing yet");
  $(".read-marker", card.root).hidden = true;
  for (const part of [".steps-chart", ".chart-head", ".class-axis"]) {
    $(part, card.root).replaceChildren();
  }
  const slider = $(".step-slider", card.root);
  slider.disabled = true;
  slider.max = 0;
  slider.removeAttribute("aria-valuetext");
  $(".play", card.root).disabled = true;
  $(".step-text", card.root).textContent = "Nothing read yet.";
}

function showError(card, message) {
  resetCard(card);
  card.root.dataset.state = "error";
  const error = $(".error", card.root);
  error.textContent = `Could not read it: ${message}`;
  error.hidden = false;
}

function showAnswer(card, answer) {
  stopPlay(card);
  card.answer = answer;
  card.root.dataset.state = "ready";
  $(".error", card.root).hidden = true;
  $(".label", card.root).textContent = answer.label;
  $(".confidence", card.root).textContent = `(${percent(answer.probabilities[answer.index])})`;
  showBars(card, answer);
  showSeen(card, answer.image);
  buildStepChart(card, answer.steps);
  const points = answer.steps ? answer.steps.steps.length : 0;
  const slider = $(".step-slider", card.root);
  slider.max = Math.max(points - 1, 0);
  slider.disabled = points === 0;
  $(".play", card.root).disabled = points < 2;
  setStep(card, Math.max(points - 1, 0)); // start on the final answer
}

function showBars(card, answer) {
  const bars = card.root.querySelectorAll(".bar");
  bars.forEach((bar, index) => {
    const probability = answer ? answer.probabilities[index] : 0;
    $(".bar-fill", bar).style.width = `${probability * 100}%`;
    $(".bar-value", bar).textContent = answer ? percent(probability, 1) : "–";
    // The answer's bar is marked in its text and shape, not by colour alone.
    bar.classList.toggle("is-answer", Boolean(answer) && index === answer.index);
  });
}

function showSeen(card, image) {
  const canvas = $(".seen", card.root);
  const height = image.length;
  const width = image[0].length;
  canvas.width = width;
  canvas.height = height;
  const context = canvas.getContext("2d");
  const pixels = context.createImageData(width, height);
  image.forEach((row, y) => row.forEach((value, x) => {
    // Shown as dark ink on white, like the pad, so the two are easy to compare.
    const grey = Math.round(255 * (1 - value));
    pixels.data.set([grey, grey, grey, 255], (y * width + x) * 4);
  }));
  context.putImageData(pixels, 0, 0);
  canvas.setAttribute("aria-label", `The ${height} by ${width} image the network saw: ` +
    "your digit cropped, scaled and centred as in MNIST");
}

// ---------------------------------------------------------------- watch it read

function buildStepChart(card, steps) {
  const [chart, head, axis] = [".steps-chart", ".chart-head", ".class-axis"].map((part) => {
    const node = $(part, card.root);
    node.replaceChildren();
    return node;
  });
  if (!steps) return;
  const names = card.answer.class_names;
  const vertical = steps.view === "rows";
  const reading = $(".reading", card.root);
  reading.style.setProperty("--classes", names.length);
  reading.style.setProperty("--points", steps.steps.length);
  chart.classList.toggle("is-dense", steps.steps.length > 28);
  // Room for the longest "name 100%"; long names (Fashion-MNIST's) stand upright in the head.
  const longest = Math.max(...names.map((name) => name.length));
  reading.style.setProperty("--lead-w", `${longest + 5}ch`);
  reading.classList.toggle("long-names", longest > 2);
  if (vertical) {
    // Column titles over the grey cells, so each cell's class can be read.
    head.append(element("span", "head-lead", "best"));
    const classes = element("span", "step-cells");
    for (const name of names) classes.append(element("span", "cell-name", name));
    head.append(classes);
  } else {
    for (const name of names) axis.append(element("li", null, name));
  }
  // Short class names (digits) fit over each column of the compact chart.
  const showLeadInColumn =
    !vertical && steps.steps.length <= 28 && names.every((name) => name.length <= 2);
  steps.probabilities.forEach((probabilities, index) => {
    chart.append(stepRow(steps, names, probabilities, index, vertical || showLeadInColumn));
  });
}

function stepRow(steps, names, probabilities, index, showLead) {
  const lead = argmax(probabilities);
  const row = element("li", "step-row");
  Object.assign(row.dataset, { index, step: steps.steps[index], label: names[lead] });
  const where = `after ${steps.step_name} ${steps.steps[index]}: `;
  const number = element("span", "step-num", String(steps.steps[index]));
  number.setAttribute("aria-hidden", "true");
  // Rows: "7 83%" beside each image row; compact charts: the label over its column if it fits.
  const [name, share] = [names[lead], ` ${percent(probabilities[lead])}`];
  const rows = steps.view === "rows";
  const leadNode = element("span", "step-lead", rows ? name + share : name);
  if (!showLead) leadNode.classList.add("visually-hidden");
  row.append(element("span", "visually-hidden", where), number, leadNode);
  if (!rows) row.append(element("span", "visually-hidden", share));
  const cells = element("span", "step-cells");
  cells.setAttribute("aria-hidden", "true");
  probabilities.forEach((probability, classIndex) => {
    const cell = element("span", classIndex === lead ? "cell is-lead" : "cell");
    // Grey level: darker is more likely; the leading cell also carries a mark.
    cell.style.setProperty("--p", probability.toFixed(3));
    cell.title = `${names[classIndex]}: ${percent(probability, 1)}`;
    cells.append(cell);
  });
  row.append(cells);
  return row;
}

function argmax(values) {
  return values.reduce((best, value, index) => (value > values[best] ? index : best), 0);
}

function setStep(card, index) {
  const steps = card.answer && card.answer.steps;
  if (!steps) return;
  card.step = index;
  const slider = $(".step-slider", card.root);
  slider.value = index;
  const text = stepText(card, index);
  slider.setAttribute("aria-valuetext", text);
  $(".step-text", card.root).textContent = text;
  for (const row of card.root.querySelectorAll(".step-row")) {
    const current = Number(row.dataset.index) === index;
    row.classList.toggle("is-current", current);
    if (current) row.setAttribute("aria-current", "step");
    else row.removeAttribute("aria-current");
  }
  markImage(card, steps.view, steps.steps[index]);
}

function stepText(card, index) {
  const { steps, class_names: names } = card.answer;
  const probabilities = steps.probabilities[index];
  const lead = argmax(probabilities);
  const order = steps.view === "permuted" ? " (in shuffled order)" : "";
  return `after ${steps.step_name} ${steps.steps[index]} of ${card.run.steps}${order}: ` +
    `${names[lead]} (${percent(probabilities[lead])})`;
}

function markImage(card, view, read) {
  // `read` steps have been read: outline the last one, dim what is still unread.
  const canvas = $(".unread", card.root);
  const { width, height } = canvas;
  const context = canvas.getContext("2d");
  context.clearRect(0, 0, width, height);
  context.fillStyle = "rgba(128, 128, 128, 0.55)";
  const marker = $(".read-marker", card.root);
  marker.hidden = view === "permuted"; // a shuffled order has no place to point at
  const cell = (value) => `calc(var(--cell) * ${value})`;
  let box = null;
  if (view === "rows") {
    context.fillRect(0, read, width, height - read);
    box = [0, read - 1, width, 1];
  } else if (view === "columns") {
    context.fillRect(read, 0, width - read, height);
    box = [read - 1, 0, 1, height];
  } else if (view === "pixels") {
    const row = Math.floor((read - 1) / width);
    const column = (read - 1) % width;
    context.fillRect(column + 1, row, width - column - 1, 1);
    context.fillRect(0, row + 1, width, height - row - 1);
    box = [column, row, 1, 1];
  }
  if (box) {
    Object.assign(marker.style, {
      left: cell(box[0]), top: cell(box[1]), width: cell(box[2]), height: cell(box[3]),
    });
  }
}

function togglePlay(card) {
  if (card.timer !== null) return stopPlay(card);
  const last = card.answer.steps.steps.length - 1;
  if (card.step >= last) setStep(card, 0); // replay from the start
  $(".play-text", card.root).textContent = "Pause";
  const delay = Math.min(Math.max(PLAY_MS / (last + 1), PLAY_STEP_MS.min), PLAY_STEP_MS.max);
  card.timer = setInterval(() => {
    if (card.step >= last) return stopPlay(card);
    setStep(card, card.step + 1);
  }, delay);
}

function stopPlay(card) {
  if (card.timer === null) return;
  clearInterval(card.timer);
  card.timer = null;
  $(".play-text", card.root).textContent = "Play";
}

// ---------------------------------------------------------------- start

setupPad();
setupUpload();
loadRuns();
