// Playground: one prompt to two models, both answers streamed side by side (any two: base vs fine-tune by default),
// each side a conversation (the Responses API: the next prompt continues the side's last response).
import { $, ApiError, api, esc, key, showError } from "./api.js";

// an error about the request itself goes beside its control; one about a model, into that model's answer
const CONTROLS = { max_output_tokens: "max-tokens", input: "prompt", messages: "prompt" };
const previous = { base: null, tuned: null };  // each side's last response: what the next prompt continues

function newConversation(side) {
  previous[side] = null;
  $(`history-${side}`).innerHTML = "";
  $(`answer-${side}`).textContent = "";
}

export async function refreshPlayground(tuned, base) {
  const ids = (await api("/v1/models")).data.map((m) => m.id).filter((id) => !id.includes(":ckpt-"));
  const isTuned = (id) => id.includes(":");
  const options = (list) => list.map((id) => `<option value="${esc(id)}">${esc(id)}</option>`).join("");
  $("base-model").innerHTML = options(ids.filter((id) => !isTuned(id)).concat(ids.filter(isTuned)));
  $("tuned-model").innerHTML = options(ids.filter(isTuned).concat(ids.filter((id) => !isTuned(id))));
  if (tuned && ids.includes(tuned)) $("tuned-model").value = tuned;
  if (base && ids.includes(base)) $("base-model").value = base;
}

async function ask(side, model) {  // streamed: the answer grows as the server sends its events
  const target = $(`answer-${side}`), prompt = $("prompt").value;
  target.textContent = "…";
  delete target.dataset.done;
  try {
    const response = await fetch("/v1/responses", { method: "POST",
      headers: { "Content-Type": "application/json", Authorization: "Bearer " + key() },
      body: JSON.stringify({ model, input: prompt, previous_response_id: previous[side] || undefined, temperature: 0,
        max_output_tokens: $("max-tokens").value.trim() ? Number($("max-tokens").value) : 32, stream: true }) });  // 0 is refused beside the field
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw new ApiError((body.error && body.error.message) || response.statusText, body.error && body.error.param, response.status);
    }
    const reader = response.body.getReader(), decoder = new TextDecoder();
    let buffered = "", text = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffered += decoder.decode(value, { stream: true });
      const events = buffered.split("\n\n");
      buffered = events.pop();  // an incomplete event waits for the next chunk
      for (const event of events) {
        const data = event.split("\n").find((line) => line.startsWith("data: "));
        if (!data) continue;
        const payload = JSON.parse(data.slice(6));
        if (payload.type === "error") throw new ApiError(payload.message, null, 0);
        if (payload.type === "response.output_text.delta") { text += payload.delta; target.textContent = text; }
        if (payload.type === "response.completed" || payload.type === "response.incomplete") previous[side] = payload.response.id;
      }
    }
    target.textContent = text;
    $(`history-${side}`).insertAdjacentHTML("beforeend",
      `<p class="turn"><b>You:</b> ${esc(prompt)}</p><p class="turn"><b>${esc(model)}:</b> ${esc(text)}</p>`);
  } catch (err) {
    const control = CONTROLS[err.param];
    if (control) { showError(control, err.message); target.textContent = `Not sent: see ${control === "prompt" ? "the prompt" : "max tokens"}.`; }
    else { target.textContent = "Error: " + err.message; target.classList.add("error"); }
  }
  target.dataset.done = "1";
}

export function setUpPlayground() {
  $("chat-form").addEventListener("submit", (event) => {
    event.preventDefault();
    for (const id of ["answer-base", "answer-tuned"]) $(id).classList.remove("error");
    for (const id of Object.values(CONTROLS)) showError(id, "");
    ask("base", $("base-model").value);
    ask("tuned", $("tuned-model").value);
  });
  $("new-chat").addEventListener("click", () => { newConversation("base"); newConversation("tuned"); });
  $("base-model").addEventListener("change", () => newConversation("base"));  // another model: another conversation
  $("tuned-model").addEventListener("change", () => newConversation("tuned"));
}
