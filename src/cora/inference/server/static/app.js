// The page of `cora serve`: look around a panorama (Photo Sphere Viewer), see the views the model cuts,
// ask about it (the OpenAI-compatible streaming endpoint), stop an answer, say whether it was right.
import { Viewer } from "@photo-sphere-viewer/core";
import { MarkersPlugin } from "@photo-sphere-viewer/markers-plugin";

const $ = (id) => document.getElementById(id);
// `conversation` counts new conversations: an answer still streaming when the panorama changes or the
// conversation is cleared is stopped and never joins the new history.
const state = { image: null, messages: [], controller: null, model: "cora", views: [], conversation: 0 };
// what the page has done, for people and for the browser test
window.cora = { chunks: 0, answers: 0, feedback: 0, tiles: 0 };

const viewer = new Viewer({
  container: $("viewer"),
  navbar: ["zoom", "move", "fullscreen"],
  plugins: [[MarkersPlugin, {}]],
  defaultZoomLvl: 0,
  loadingTxt: "loading…",
});
const markers = viewer.getPlugin(MarkersPlugin);

function showError(message) {
  $("error").textContent = message || "";
}

async function errorText(response) {
  try {
    const body = await response.json();
    return `${response.status}: ${body.error ? body.error.message : JSON.stringify(body)}`;
  } catch {
    return `${response.status} ${response.statusText}`;
  }
}

// -- the panorama ---------------------------------------------------------------------------------------
function newConversation() {
  if (state.controller) state.controller.abort();
  state.conversation += 1;
  state.messages = [];
  $("history").replaceChildren();
}

async function usePanorama(dataUrl) {
  newConversation();
  state.image = dataUrl;
  $("drop").hidden = true;
  await viewer.setPanorama(dataUrl, { showLoader: true });
  drawTiles();
}

function readFile(file) {
  if (!file.type.startsWith("image/")) {
    showError(`${file.name}: not an image`);
    return;
  }
  const reader = new FileReader();
  reader.onload = () => usePanorama(reader.result).catch((e) => showError(String(e)));
  reader.readAsDataURL(file);
}

$("file").addEventListener("change", (e) => e.target.files[0] && readFile(e.target.files[0]));
$("viewer").addEventListener("dragover", (e) => { e.preventDefault(); $("viewer").classList.add("dragging"); });
$("viewer").addEventListener("dragleave", () => $("viewer").classList.remove("dragging"));
$("viewer").addEventListener("drop", (e) => {
  e.preventDefault();
  $("viewer").classList.remove("dragging");
  if (e.dataTransfer.files[0]) readFile(e.dataTransfer.files[0]);
});

$("examples").addEventListener("change", async (e) => {
  if (!e.target.value) return;
  const response = await fetch(e.target.value);
  if (!response.ok) return showError(await errorText(response));
  const blob = await response.blob();
  const reader = new FileReader();
  reader.onload = () => usePanorama(reader.result);
  reader.readAsDataURL(blob);
});

// -- the model's views on the sphere --------------------------------------------------------------------
const rad = (deg) => (deg * Math.PI) / 180;

function drawTiles() {
  markers.clearMarkers();
  window.cora.tiles = 0;
  if (!$("tiles").checked || !state.image) return;
  for (const view of state.views) {
    if (!view.outline) continue; // the global view is the whole sphere
    markers.addMarker({
      id: `view-${view.index}`,
      polygon: view.outline.map(([lon, lat]) => [rad(lon), rad(lat)]),
      svgStyle: { fill: "rgba(37, 99, 235, 0.06)", stroke: "rgba(96, 165, 250, 0.95)", strokeWidth: "2px" },
      tooltip: { content: `${view.kind} ${view.index}: yaw ${view.yaw_deg.toFixed(0)}°`, position: "top center" },
      data: { yaw: rad(view.yaw_deg), pitch: rad(view.pitch_deg) },
    });
    window.cora.tiles += 1;
  }
}

$("tiles").addEventListener("change", drawTiles);
markers.addEventListener("select-marker", ({ marker }) => {
  viewer.animate({ yaw: marker.data.yaw, pitch: marker.data.pitch, speed: "8rpm" });
});

// -- asking ---------------------------------------------------------------------------------------------
function addTurn(question) {
  const turn = $("turn").content.firstElementChild.cloneNode(true);
  turn.querySelector(".q").textContent = question;
  $("history").append(turn);
  return turn;
}

function userMessage(question) {
  if (state.messages.length) return { role: "user", content: question };
  return {
    role: "user",
    content: [
      { type: "image_url", image_url: { url: state.image } },
      { type: "text", text: question },
    ],
  };
}

// Server-sent events of a fetch body: each `data: ...` payload, in order.
async function* events(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
      if (data) yield data;
    }
  }
}

async function ask(question) {
  const conversation = state.conversation;
  const turn = addTurn(question);
  const answer = turn.querySelector(".a");
  const message = userMessage(question);
  state.controller = new AbortController();
  $("send").disabled = true;
  $("stop").disabled = false;
  showError("");
  let text = "";
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: { "content-type": "application/json" },
      signal: state.controller.signal,
      body: JSON.stringify({
        model: state.model,
        stream: true,
        max_tokens: Number($("max-tokens").value) || 128,
        messages: [...state.messages, message],
      }),
    });
    if (!response.ok) throw new Error(await errorText(response));
    for await (const data of events(response)) {
      if (data === "[DONE]") break;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message);
      const piece = chunk.choices[0] && chunk.choices[0].delta.content;
      if (piece) {
        text += piece;
        answer.textContent = text;
        window.cora.chunks += 1;
      }
    }
  } catch (e) {
    if (e.name === "AbortError") answer.classList.add("stopped");
    else showError(String(e.message || e));
  } finally {
    state.controller = null;
    $("send").disabled = false;
    $("stop").disabled = true;
  }
  text = text.trim();
  if (text && conversation === state.conversation) {
    state.messages.push(message, { role: "assistant", content: text });
    window.cora.answers += 1;
    offerFeedback(turn, question, text);
  }
}

$("ask").addEventListener("submit", (e) => {
  e.preventDefault();
  const question = $("question").value.trim();
  if (!state.image) return showError("choose a panorama first");
  if (!question) return;
  $("question").value = "";
  ask(question);
});
$("question").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) {
    e.preventDefault();
    $("ask").requestSubmit();
  }
});
$("stop").addEventListener("click", () => state.controller && state.controller.abort());
$("clear").addEventListener("click", newConversation);

// -- feedback -------------------------------------------------------------------------------------------
function offerFeedback(turn, question, answer) {
  const box = turn.querySelector(".feedback");
  box.hidden = false;
  let rating = null;
  for (const [cls, value] of [[".up", 1], [".down", -1]]) {
    const button = box.querySelector(cls);
    button.setAttribute("aria-pressed", "false");
    button.addEventListener("click", () => {
      rating = value;
      box.querySelectorAll(".up, .down").forEach((b) => b.setAttribute("aria-pressed", String(b === button)));
    });
  }
  box.querySelector(".send-feedback").addEventListener("click", async () => {
    const correction = box.querySelector(".correction").value.trim();
    const response = await fetch("/v1/feedback", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ image: state.image, query: question, answer, rating, correction: correction || null }),
    });
    if (!response.ok) return showError(await errorText(response));
    box.querySelector(".sent").textContent = "thank you: saved";
    window.cora.feedback += 1;
  });
}

// -- what the server says about itself ------------------------------------------------------------------
async function start() {
  try {
    const [models, views, examples] = await Promise.all(
      ["/v1/models", "/v1/views", "/v1/examples"].map((url) => fetch(url).then(async (r) => {
        if (!r.ok) throw new Error(`${url}: ${await errorText(r)}`);
        return r.json();
      })),
    );
    state.model = models.data[0].id;
    state.views = views.data;
    $("model").textContent = `model ${state.model}: ${views.data.length} views per panorama`;
    for (const example of examples.data) {
      const option = document.createElement("option");
      option.value = example.url;
      option.textContent = example.name;
      $("examples").append(option);
    }
  } catch (e) {
    $("model").textContent = "";
    showError(String(e.message || e));
  }
}
start();
