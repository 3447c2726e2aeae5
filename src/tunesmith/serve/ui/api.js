// The JSON API as the pages use it: the saved key as a Bearer header, OpenAI's error shape turned into an
// ApiError that keeps `param`, so each page can show the message beside the control that caused it.
export const $ = (id) => document.getElementById(id);

export class ApiError extends Error {
  constructor(message, param, status) { super(message); this.param = param; this.status = status; }
}

export function esc(text) { const d = document.createElement("div"); d.textContent = text == null ? "" : String(text); return d.innerHTML; }

export const key = () => localStorage.getItem("tunesmith-key") || "";
const auth = () => ({ Authorization: "Bearer " + key() });

function failure(status, body, statusText) {
  const error = (body && body.error) || {};
  return new ApiError(error.message || statusText || `HTTP ${status}`, error.param || null, status);
}

export async function api(path, options = {}) {
  const headers = { ...auth(), ...(options.headers || {}) };
  let body = options.body;
  if (options.json !== undefined) { headers["Content-Type"] = "application/json"; body = JSON.stringify(options.json); }
  const response = await fetch(path, { method: options.method || (body ? "POST" : "GET"), headers, body });
  const answer = await response.json().catch(() => null);
  if (!response.ok) throw failure(response.status, answer, response.statusText);
  return answer;
}

// multipart POST through XMLHttpRequest, the one browser API that reports upload progress
export function upload(path, form, onProgress) {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open("POST", path);
    request.setRequestHeader("Authorization", auth().Authorization);
    request.upload.onprogress = (event) => { if (event.lengthComputable) onProgress(event.loaded / event.total); };
    request.onload = () => {
      let body = null;
      try { body = JSON.parse(request.responseText); } catch { /* not JSON: the status says enough */ }
      if (request.status >= 200 && request.status < 300) resolve(body);
      else reject(failure(request.status, body, request.statusText));
    };
    request.onerror = () => reject(new ApiError("network error: the server could not be reached", null, 0));
    request.send(form);
  });
}

// Every control has a sibling <span id="CONTROL-error" role="alert">; the control points at it (aria-describedby).
export function showError(controlId, message) {
  const target = $(controlId + "-error");
  target.textContent = message || "";
  const control = $(controlId);
  if (control && control.setAttribute) control.setAttribute("aria-invalid", message ? "true" : "false");
}

export function clearErrors(container) {
  for (const node of container.querySelectorAll(".error")) node.textContent = "";
  for (const node of container.querySelectorAll("[aria-invalid]")) node.setAttribute("aria-invalid", "false");
}

export function duration(seconds) {
  if (seconds == null || !isFinite(seconds)) return "—";
  seconds = Math.max(0, Math.round(seconds));
  const h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
  return h ? `${h} h ${m} min` : m ? `${m} min ${s} s` : `${s} s`;
}

export function bytes(n) {
  if (n == null) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

export const when = (unix) => unix ? new Date(unix * 1000).toLocaleString() : "";

// Rows that open something: a click or Enter/Space on the focused row
export function activateRows(table, selector, open) {
  table.addEventListener("click", (event) => {
    if (event.target.closest("button, a")) return;
    const row = event.target.closest(selector);
    if (row) open(row);
  });
  table.addEventListener("keydown", (event) => {
    const row = event.target.closest(selector);
    if (row && event.target === row && (event.key === "Enter" || event.key === " ")) { event.preventDefault(); open(row); }
  });
}
