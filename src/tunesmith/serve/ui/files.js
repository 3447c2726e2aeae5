// Files page: upload (picker or drag and drop, with progress), the data check of a file shown at once, delete.
import { $, ApiError, activateRows, api, bytes, esc, showError, upload, when } from "./api.js";
import { histogram } from "./charts.js";

export async function refreshFiles() {
  const page = await api("/v1/files");
  $("files").querySelector("tbody").innerHTML = page.data.map((f) => `<tr class="clickable" tabindex="0" data-file="${esc(f.id)}">
    <td>${esc(f.id)}</td><td>${esc(f.filename)}${f.status === "error" ? ' <span class="fail">failed its data check</span>' : ""}</td><td>${esc(bytes(f.bytes))}</td><td>${esc(when(f.created_at))}</td>
    <td><button type="button" class="delete" id="delete-${esc(f.id)}" aria-describedby="delete-${esc(f.id)}-error">Delete</button>
    <span class="error" id="delete-${esc(f.id)}-error" role="alert"></span></td></tr>`).join("");
  return page.data;
}

const list = (items, render) => items && items.length ? `<ul>${items.map((i) => `<li>${render(i)}</li>`).join("")}</ul>` : "<p>none</p>";

function previewHtml(text) {  // trained tokens come wrapped in [[...]]: show them marked
  return text.split(/(\[\[[\s\S]*?\]\])/).map((part) =>
    part.startsWith("[[") && part.endsWith("]]") ? `<mark>${esc(part.slice(2, -2))}</mark>` : esc(part)).join("");
}

function errorTable(errors) {
  if (!errors || !errors.length) return "<p class=\"pass\">no invalid rows</p>";
  return `<div class="scroll"><table class="row-errors"><thead><tr><th>Line</th><th>Field</th><th>Problem</th><th>What to do</th></tr></thead><tbody>
    ${errors.map((e) => `<tr class="row-error" data-line="${esc(e.line)}"><td>line ${esc(e.line)}</td><td>${esc(e.field || "")}</td>
      <td>${esc(e.message)}</td><td>${esc(e.hint || "")}</td></tr>`).join("")}</tbody></table></div>`;
}

function tokenTable(stats, prompts) {  // a prompt file trains no token of its own: no trained column; long prompts are skipped
  return `<div class="scroll"><table><thead><tr><th>File</th><th>Part</th><th>Rows</th><th>Min</th><th>Median</th><th>p95</th><th>Max</th>
    ${prompts ? "" : "<th>Trained tokens</th>"}<th>${prompts ? "Skipped" : "Truncated"}</th></tr></thead><tbody>${stats.map((t) => `<tr><td>${esc(t.file)}</td><td>${esc(t.part)}</td>
    <td>${t.count}</td><td>${t.min}</td><td>${t.median}</td><td>${t.p95}</td><td>${t.max}</td>${prompts ? "" : `<td>${t.trained_tokens}</td>`}
    <td>${t.truncated_rows}</td></tr>`).join("")}</tbody></table></div>`;
}

function previewSection(report, prompts) {
  if (prompts) return "<h4>Answers</h4><p>none in a prompt file: they are sampled from the model during training and scored by the grader</p>";
  return `<h4>Trained tokens of one row${report.preview ? ` (line ${report.preview.line}; highlighted tokens are trained)` : ""}</h4>
    ${report.preview ? `<pre class="preview">${previewHtml(report.preview.text)}</pre>` : "<p>none</p>"}`;
}

export function renderCheck(target, name, report) {
  const stats = report.token_stats || [];
  const prompts = (report.files || []).some((f) => f.kind === "prompts");  // reinforcement prompts, answered in training
  const lengths = !report.max_length ? "" : prompts ? ` (prompts of ${report.max_length} tokens or more are skipped)`
    : ` (rows longer than ${report.max_length} are truncated)`;
  const balance = (report.class_balance || []).map((b) => `${esc(b.file)}: ` + Object.entries(b.counts).map(([k, v]) => `${esc(k)} ${v}`).join(", "));
  target.innerHTML = `<h3>Data check: ${esc(name)} <span class="${report.ok === false || (report.errors || []).length ? "fail" : "pass"}">
      ${(report.errors || []).length ? `${report.errors.length} invalid row(s)` : "ready to train"}</span></h3>
    ${list(report.files, (f) => esc(`${f.role}: ${f.rows} rows, ${f.valid_rows} valid (${f.kind}, ${f.format})`))}
    <h4>Row errors</h4>${errorTable(report.errors)}
    <h4>Warnings</h4>${list(report.warnings, (w) => esc(w.message))}
    <h4>Personal data (PII)</h4>${list(report.pii, (p) => esc(`line ${p.line}: ${p.kind} — ${p.snippet}`))}
    ${balance.length ? `<h4>Class balance</h4>${list(balance, (b) => b)}` : ""}
    <h4>${prompts ? "Prompt tokens" : "Token lengths"}${lengths}</h4>
    ${stats.length ? tokenTable(stats, prompts) + `<figure><figcaption>Rows by length in tokens (${esc(stats[0].file)}, ${esc(stats[0].part)})</figcaption>
      <svg id="length-histogram" viewBox="0 0 640 220" role="img" aria-label="token length histogram"></svg></figure>` : "<p>none (the file has no valid rows)</p>"}
    ${previewSection(report, prompts)}`;
  if (stats.length) histogram($("length-histogram"), stats[0].histogram || []);
}

async function showStoredCheck(fileId, name) {
  $("file-check").innerHTML = `<p role="status">checking ${esc(name)}…</p>`;
  try { renderCheck($("file-check"), name, await api(`/ui/api/files/${encodeURIComponent(fileId)}/data-check`)); }
  catch (err) { $("file-check").innerHTML = `<p class="error">${esc(err.message)}</p>`; }
}

async function sendFile(file) {
  showError("upload", "");
  $("file-check").innerHTML = "";
  const progress = $("upload-progress"), status = $("upload-status");
  progress.hidden = false; progress.value = 0;
  status.textContent = `uploading ${file.name}…`;
  const form = new FormData(); form.append("purpose", "fine-tune"); form.append("file", file);
  try {
    const stored = await upload("/v1/files", form, (share) => { progress.value = Math.round(100 * share); });
    progress.value = 100;
    status.textContent = `${file.name} stored; checking its rows…`;
    // the full data check runs after the upload is answered: wait for its verdict (the file's status)
    const checked = await api(`/ui/api/files/${encodeURIComponent(stored.id)}/check`);
    if (checked.status === "error") {
      status.textContent = `uploaded ${file.name} as ${stored.id}, but it failed its data check: no job can train on it`;
      showError("upload", checked.status_details);
    } else {
      status.textContent = `uploaded ${file.name} as ${stored.id}`;
    }
    await refreshFiles();
    await showStoredCheck(stored.id, file.name);
  } catch (err) {
    status.textContent = `${file.name} was not stored`;
    showError("upload", err.message);
    if (err instanceof ApiError && err.status === 400) await checkUnstored(file);  // why, row by row
  }
}

async function checkUnstored(file) {
  const form = new FormData(); form.append("file", file);
  try { renderCheck($("file-check"), file.name, await api("/ui/api/data-check", { body: form })); }
  catch (err) { $("file-check").innerHTML = `<p class="error">${esc(err.message)}</p>`; }
}

export function setUpFiles() {
  $("upload").addEventListener("change", () => { if ($("upload").files[0]) sendFile($("upload").files[0]); });
  $("upload-form").addEventListener("submit", (event) => event.preventDefault());
  const zone = $("upload-form");
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("dragging"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault(); zone.classList.remove("dragging");
    if (event.dataTransfer.files[0]) sendFile(event.dataTransfer.files[0]);
  });
  activateRows($("files"), "tr[data-file]", (row) => showStoredCheck(row.dataset.file, row.children[1].textContent));
  $("files").addEventListener("click", async (event) => {
    const button = event.target.closest("button.delete");
    if (!button) return;
    const fileId = button.closest("tr").dataset.file;
    showError(button.id, "");
    try { await api(`/v1/files/${encodeURIComponent(fileId)}`, { method: "DELETE" }); await refreshFiles(); $("file-check").innerHTML = ""; }
    catch (err) { showError(button.id, err.message); }
  });
}
