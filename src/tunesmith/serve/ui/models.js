// Models page: base and fine-tuned models with their lineage and model card; two models compared on the
// evaluations their jobs ran, on a server suite run now (A before, B after), and side by side in the playground.
import { $, activateRows, api, esc, showError } from "./api.js";
import { renderEvaluation, renderLineage } from "./jobs.js";

let models = [];

const kindOf = (m) => m.id.startsWith("ft:") ? "fine-tuned" : m.version ? `version ${m.version}` : "base";

export async function refreshModels() {
  models = (await api("/v1/models")).data;
  $("models").querySelector("tbody").innerHTML = models.map((m) => {
    const l = m.lineage || {};
    const data = (l.data || []).map((d) => `${d.role}: ${d.file_id || "?"} (${d.rows} rows)`).join(", ");
    const evals = (l.evaluations || []).map((e) => `${e.suite}: ${e.passed ? "passed" : "FAILED"}`).join(", ");
    return `<tr class="clickable" tabindex="0" data-model="${esc(m.id)}"><td>${esc(m.id)}</td><td>${esc(kindOf(m))}</td>
      <td>${esc(l.parent || l.base_model || m.parent || m.root || "")}</td><td>${esc(data)}</td><td>${esc(evals)}</td></tr>`;
  }).join("");
  const options = models.map((m) => `<option value="${esc(m.id)}">${esc(m.id)}</option>`).join("");
  for (const id of ["compare-a", "compare-b"]) {
    const kept = $(id).value;
    $(id).innerHTML = options;
    if (kept) $(id).value = kept;
  }
  const tuned = models.filter((m) => m.id.startsWith("ft:"));
  if (!$("compare-b").value || $("compare-a").value === $("compare-b").value) {
    if (tuned.length) $("compare-b").value = tuned[0].id;
  }
  updateChatLink();
  const suites = (await api("/ui/api/suites")).data.filter((s) => !s.error);
  $("compare-suite").innerHTML = suites.length ? suites.map((s) => `<option value="${esc(s.name)}">${esc(s.name)}</option>`).join("")
    : '<option value="">no suites on this server (HOME/suites/NAME.yaml)</option>';
  $("compare-run").disabled = !suites.length;
  await refreshComparisons();
}

// Comparisons are kept by the server (the registry), so a report run before a restart is still here
async function refreshComparisons() {
  const page = await api("/ui/api/comparisons");
  const verdict = (c) => c.status === "succeeded" ? `succeeded, ${c.passed ? "PASSED" : "FAILED"}` : c.status;
  $("comparisons").querySelector("tbody").innerHTML = page.data.length ? page.data.map((c) => `<tr class="clickable" tabindex="0"
    data-comparison="${esc(c.id)}"><td>${esc(c.id)}</td><td>${esc(c.a)}</td><td>${esc(c.b)}</td>
    <td>${esc(c.suite)}${c.limit ? ` (first ${esc(c.limit)} items)` : ""}</td><td>${esc(verdict(c))}</td></tr>`).join("")
    : '<tr><td colspan="5">none yet</td></tr>';
}

function renderComparison(comparison) {
  const { a, b, suite } = comparison;
  return comparison.status === "succeeded"
    ? `<h4>Suite ${esc(suite)}: ${esc(a)} (before) vs ${esc(b)} (after)</h4>${renderEvaluation(comparison.report)}`
    : comparison.status === "running" ? `<p role="status">running suite ${esc(suite)} on ${esc(a)} and ${esc(b)}…</p>`
      : `<p class="error">The comparison failed: ${esc(comparison.error)}</p>`;
}

async function showComparison(comparisonId) {
  const target = $("compare-suite-report");
  try { target.innerHTML = renderComparison(await api(`/ui/api/comparisons/${encodeURIComponent(comparisonId)}`)); }
  catch (err) { target.innerHTML = `<p class="error">${esc(err.message)}</p>`; }
  target.scrollIntoView({ block: "nearest" });
}

async function showModel(modelId) {
  $("model-detail").hidden = false;
  $("model-title").textContent = modelId;
  $("model-continue").href = `#new/${encodeURIComponent(modelId)}`;
  if (!modelId.startsWith("ft:")) {
    $("model-lineage").textContent = "A base model served by this server.";
    $("model-card-view").textContent = "";
    return;
  }
  try { $("model-lineage").innerHTML = renderLineage(await api(`/v1/models/${encodeURIComponent(modelId)}/lineage`)); }
  catch (err) { $("model-lineage").textContent = "No lineage record: " + err.message; }
  try { $("model-card-view").textContent = (await api(`/ui/api/models/${encodeURIComponent(modelId)}/model-card`)).text; }
  catch (err) { $("model-card-view").textContent = "No model card: " + err.message; }
}

async function evaluationOf(modelId) {
  if (!modelId.startsWith("ft:")) return `<p>${esc(modelId)} is a base model: it is the "before" column of its fine-tunes' reports.</p>`;
  try { return renderEvaluation(await api(`/ui/api/models/${encodeURIComponent(modelId)}/evaluation`)); }
  catch (err) { return `<p>${esc(err.message)}</p>`; }
}

async function compare(event) {
  event.preventDefault();
  const [a, b] = [$("compare-a").value, $("compare-b").value];
  const [left, right] = await Promise.all([evaluationOf(a), evaluationOf(b)]);
  $("compare").innerHTML = `<div><h4>${esc(a)}</h4>${left}</div><div><h4>${esc(b)}</h4>${right}</div>`;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const COMPARE_CONTROLS = { a: "compare-a", b: "compare-b", suite: "compare-suite", limit: "compare-limit" };

async function runSuite() {
  for (const id of [...Object.values(COMPARE_CONTROLS), "compare-run"]) showError(id, "");
  const [a, b, suite] = [$("compare-a").value, $("compare-b").value, $("compare-suite").value];
  const limitText = $("compare-limit").value.trim();
  const body = { a, b, suite, ...(limitText ? { limit: Number(limitText) } : {}) };
  const target = $("compare-suite-report");
  $("compare-run").disabled = true;
  try {
    let comparison = await api("/ui/api/comparisons", { json: body });
    target.innerHTML = renderComparison(comparison);
    await refreshComparisons();
    while (comparison.status === "running") { await sleep(1000); comparison = await api(`/ui/api/comparisons/${comparison.id}`); }
    target.innerHTML = renderComparison(comparison);
    await refreshComparisons();
  } catch (err) {
    const control = COMPARE_CONTROLS[err.param] || "compare-run";
    showError(control, err.message);
    $(control).focus();
  } finally { $("compare-run").disabled = false; }
}

function updateChatLink() {
  $("compare-chat").href = `#playground/${encodeURIComponent($("compare-b").value)}/${encodeURIComponent($("compare-a").value)}`;
}

export function setUpModels() {
  activateRows($("models"), "tr[data-model]", (row) => showModel(row.dataset.model));
  activateRows($("comparisons"), "tr[data-comparison]", (row) => showComparison(row.dataset.comparison));
  $("compare-form").addEventListener("submit", compare);
  $("compare-form").addEventListener("change", updateChatLink);
  $("compare-run").addEventListener("click", runSuite);
}
