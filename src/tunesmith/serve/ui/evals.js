// Evals page (OpenAI's Evals API): the key's evals; an eval's runs side by side (one per model: the gain is the
// difference in pass rate), a run repeated with another model in one step, and a run's rows with the answer and
// each criterion's verdict (failing and erroring rows first); a new eval from an uploaded JSONL file of items, run
// at once with a model (a string check of its answer against a template over each item).
import { $, activateRows, api, clearErrors, esc, showError, upload, when } from "./api.js";

let current = null;  // the eval shown
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const rate = (c) => c.total ? `${(100 * c.passed / c.total).toFixed(1)}%` : "—";
const criteria = (e) => e.testing_criteria.map((c) => `${c.name} (${c.type})`).join(", ");

export async function refreshEvals(evalId) {
  const page = await api("/v1/evals?order=desc&limit=100");
  $("evals").querySelector("tbody").innerHTML = page.data.length ? page.data.map((e) => `<tr class="clickable"
    tabindex="0" data-eval="${esc(e.id)}"><td>${esc(e.name)}</td><td>${esc(e.id)}</td><td>${esc(criteria(e))}</td>
    <td>${esc(when(e.created_at))}</td></tr>`).join("")
    : '<tr><td colspan="4">none yet: create one below, or with client.evals.create(...)</td></tr>';
  const models = (await api("/v1/models")).data;
  const options = models.map((m) => `<option value="${esc(m.id)}">${esc(m.id)}</option>`).join("");
  $("eval-model").innerHTML = options;
  $("new-eval-model").innerHTML = options;
  if (evalId) await showEval(evalId);
}

async function showEval(evalId) {
  current = await api(`/v1/evals/${encodeURIComponent(evalId)}`);
  $("eval-detail").hidden = false;
  $("eval-title").textContent = `${current.name} (${current.id})`;
  $("eval-criteria").textContent = `Criteria: ${criteria(current)}`;
  $("eval-items").innerHTML = "";
  await refreshRuns();
}

async function refreshRuns() {
  const runs = (await api(`/v1/evals/${current.id}/runs?limit=100`)).data;
  const names = current.testing_criteria.map((c) => c.name);
  $("eval-runs").querySelector("thead").innerHTML = `<tr><th>Run</th><th>Model</th><th>Status</th><th>Passed</th>
    <th>Failed</th><th>Errored</th><th>Pass rate</th>${names.map((n) => `<th>${esc(n)}</th>`).join("")}</tr>`;
  $("eval-runs").querySelector("tbody").innerHTML = runs.length ? runs.map((r) => {
    const c = r.result_counts, per = Object.fromEntries(r.per_testing_criteria_results.map((p) => [p.testing_criteria, p]));
    return `<tr class="clickable" tabindex="0" data-run="${esc(r.id)}"><td>${esc(r.name)}</td><td>${esc(r.model || "given answers")}</td>
      <td>${esc(r.status)}${r.error ? `: ${esc(r.error.message)}` : ""}</td><td>${c.passed}</td><td>${c.failed}</td>
      <td>${c.errored}</td><td>${rate(c)}</td>${names.map((n) => `<td>${per[n] ? `${per[n].passed}/${per[n].passed + per[n].failed}` : "—"}</td>`).join("")}</tr>`;
  }).join("") : `<tr><td colspan="${7 + names.length}">no runs yet</td></tr>`;
  const asked = runs.find((r) => r.data_source.type === "completions");
  $("eval-rerun").disabled = !asked;
  $("eval-rerun").dataset.run = asked ? asked.id : "";
  return runs;
}

async function showItems(runId) {
  const target = $("eval-items");
  const [failing, erroring] = await Promise.all(["fail", "error"].map((status) =>
    api(`/v1/evals/${current.id}/runs/${encodeURIComponent(runId)}/output_items?status=${status}&limit=50`)));
  const rows = [...erroring.data, ...failing.data];
  target.innerHTML = `<h4>Run ${esc(runId)}: rows that did not pass (${rows.length}${failing.has_more || erroring.has_more ? "+" : ""})</h4>` +
    (rows.length ? `<div class="scroll"><table><thead><tr><th>Row</th><th>Item</th><th>Answer</th><th>Verdicts</th></tr></thead><tbody>${
      rows.map((i) => `<tr><td>${i.datasource_item_id}</td><td><code>${esc(JSON.stringify(i.datasource_item))}</code></td>
        <td>${esc(i.sample.error ? `error: ${i.sample.error.message}` : (i.sample.output[0] || {}).content)}</td>
        <td>${i.results.map((r) => `${esc(r.name)}: ${r.error ? `error (${esc(r.error)})` : `${r.passed ? "pass" : "fail"} ${Number(r.score).toFixed(2)}`}`).join("<br>")}</td></tr>`).join("")
    }</tbody></table></div>` : "<p>Every row passed.</p>");
}

async function untilFinished(run) {
  while (run.status === "queued" || run.status === "in_progress") {
    await sleep(1000);
    run = await api(`/v1/evals/${current.id}/runs/${run.id}`);
    await refreshRuns();
  }
}

// The request field (or its beginning) each step's 400 names → the control that sets it; anything else is the file's
const FIELDS = [["name", "new-eval-name"], ["testing_criteria", "new-eval-reference"],
  ["data_source.input_messages", "new-eval-prompt"], ["data_source.model", "new-eval-model"],
  ["model", "new-eval-model"], ["data_source.sampling_params", "new-eval-max-tokens"]];
const controlFor = (param) => (FIELDS.find(([field]) => param && (param === field || param.startsWith(field + ".")
  || param.startsWith(field + "[")))?.[1]) || "new-eval-file";

async function createEval(event) {
  event.preventDefault();
  const form = $("new-eval-form");
  clearErrors(form);
  const name = $("new-eval-name").value.trim(), file = $("new-eval-file").files[0];
  const maxTokens = Number($("new-eval-max-tokens").value);
  if (!name) { showError("new-eval-name", "Name the eval."); $("new-eval-name").focus(); return; }
  if (!file) { showError("new-eval-file", "Choose a JSONL file of rows."); $("new-eval-file").focus(); return; }
  if (!Number.isInteger(maxTokens) || maxTokens < 1) {
    showError("new-eval-max-tokens", "A whole number of tokens, at least 1."); $("new-eval-max-tokens").focus(); return;
  }
  const status = $("new-eval-status"), model = $("new-eval-model").value;
  let stored = null, created = null, run = null;
  try {
    status.textContent = `uploading ${file.name}…`;
    const rows = new FormData(); rows.append("purpose", "evals"); rows.append("file", file);
    stored = await upload("/v1/files", rows, () => {});
    status.textContent = "creating the eval…";
    created = await api("/v1/evals", { json: { name,
      data_source_config: { type: "custom", item_schema: { type: "object" } },
      testing_criteria: [{ type: "string_check", name: "answer", operation: $("new-eval-check").value,
        input: "{{ sample.output_text }}", reference: $("new-eval-reference").value }] } });
    run = await api(`/v1/evals/${created.id}/runs`, { json: { name: model, data_source: {
      type: "completions", model, source: { type: "file_id", id: stored.id },
      input_messages: { type: "template", template: [{ role: "user", content: $("new-eval-prompt").value }] },
      sampling_params: { temperature: 0, max_completion_tokens: maxTokens } } } });
  } catch (err) {  // nothing half made stays behind (an eval without its run, a file no eval reads)
    if (created) await api(`/v1/evals/${created.id}`, { method: "DELETE" }).catch(() => {});
    if (stored) await api(`/v1/files/${stored.id}`, { method: "DELETE" }).catch(() => {});
    status.textContent = "";
    const control = controlFor(err.param);
    showError(control, err.message);
    $(control).focus();
    return;
  }
  status.textContent = `created ${created.id}; running it with ${model}`;
  form.reset();
  location.hash = `#evals/${encodeURIComponent(created.id)}`;
  await refreshEvals(created.id);
  try { await untilFinished(run); } catch (err) { status.textContent = `following the run: ${err.message}`; }
}

async function rerun(event) {
  event.preventDefault();
  showError("eval-model", "");
  const model = $("eval-model").value, source = $("eval-rerun").dataset.run;
  try {
    const earlier = await api(`/v1/evals/${current.id}/runs/${encodeURIComponent(source)}`);
    const run = await api(`/v1/evals/${current.id}/runs`, { json: { name: model, data_source: { ...earlier.data_source, model } } });
    await refreshRuns();
    await untilFinished(run);
  } catch (err) { showError("eval-model", err.message); $("eval-model").focus(); }
}

export function setUpEvals() {
  activateRows($("evals"), "tr[data-eval]", (row) => { location.hash = `#evals/${encodeURIComponent(row.dataset.eval)}`; });
  activateRows($("eval-runs"), "tr[data-run]", (row) => showItems(row.dataset.run));
  $("eval-form").addEventListener("submit", rerun);
  $("new-eval-form").addEventListener("submit", createEval);
}
