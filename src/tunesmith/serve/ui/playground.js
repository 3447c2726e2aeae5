// Playground: one prompt to two models, both answers streamed side by side (any two: base vs fine-tune by default).
import { $, ApiError, api, esc, key, showError } from "./api.js";

// an error about the request itself goes beside its control; one about a model, into that model's answer
const CONTROLS = { max_tokens: "max-tokens", messages: "prompt" };

export async function refreshPlayground(tuned, base) {
  const ids = (await api("/v1/models")).data.map((m) => m.id).filter((id) => !id.includes(":ckpt-"));
  const isTuned = (id) => id.includes(":");
  const options = (list) => list.map((id) => `<option value="${esc(id)}">${esc(id)}</option>`).join("");
  $("base-model").innerHTML = options(ids.filter((id) => !isTuned(id)).concat(ids.filter(isTuned)));
  $("tuned-model").innerHTML = options(ids.filter(isTuned).concat(ids.filter((id) => !isTuned(id))));
  if (tuned && ids.includes(tuned)) $("tuned-model").value = tuned;
  if (base && ids.includes(base)) $("base-model").value = base;
}

async function ask(model, target) {  // streamed: the answer grows as the server sends its SSE chunks
  target.textContent = "…";
  delete target.dataset.done;
  try {
    const response = await fetch("/v1/chat/completions", { method: "POST",
      headers: { "Content-Type": "application/json", Authorization: "Bearer " + key() },
      body: JSON.stringify({ model, messages: [{ role: "user", content: $("prompt").value }], temperature: 0,
        max_tokens: $("max-tokens").value.trim() ? Number($("max-tokens").value) : 32, stream: true }) });  // 0 is refused beside the field
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
        const data = event.replace(/^data: /, "");
        if (!data || data === "[DONE]") continue;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new ApiError(chunk.error.message, null, 0);
        text += (chunk.choices[0] && chunk.choices[0].delta.content) || "";
        target.textContent = text;
      }
    }
    target.textContent = text;
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
    ask($("base-model").value, $("answer-base"));
    ask($("tuned-model").value, $("answer-tuned"));
  });
}
