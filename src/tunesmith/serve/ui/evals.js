// Evals page (OpenAI's Evals API): the key's evals; an eval's runs side by side (one per model: the gain is the
// difference in pass rate), a run repeated with another model in one step, and a run's rows with the answer and
// each criterion's verdict (failing and erroring rows first).
import { $, activateRows, api, esc, showError, when } from "./api.js";

let current = null;  // the eval shown
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const rate = (c) => c.total ? `${(100 * c.passed / c.total).toFixed(1)}%` : "—";
const criteria = (e) => e.testing_criteria.map((c) => `${c.name} (${c.type})`).join(", ");

export async function refreshEvals(evalId) {
  const page = await api("/v1/evals?order=desc&limit=100");
  $("evals").querySelector("tbody").innerHTML = page.data.length ? page.data.map((e) => `<tr class="clickable"
    tabindex="0" data-eval="${esc(e.id)}"><td>${esc(e.name)}</td><td>${esc(e.id)}</td><td>${esc(criteria(e))}</td>
    <td>${esc(when(e.created_at))}</td></tr>`).join("")
    : '<tr><td colspan="4">none yet: create one with client.evals.create(...)</td></tr>';
  const models = (await api("/v1/models")).data;
  $("eval-model").innerHTML = models.map((m) => `<option value="${esc(m.id)}">${esc(m.id)}</option>`).join("");
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

async function rerun(event) {
  event.preventDefault();
  showError("eval-model", "");
  const model = $("eval-model").value, source = $("eval-rerun").dataset.run;
  try {
    const earlier = await api(`/v1/evals/${current.id}/runs/${encodeURIComponent(source)}`);
    let run = await api(`/v1/evals/${current.id}/runs`, { json: { name: model, data_source: { ...earlier.data_source, model } } });
    await refreshRuns();
    while (run.status === "queued" || run.status === "in_progress") {
      await sleep(1000);
      run = await api(`/v1/evals/${current.id}/runs/${run.id}`);
      await refreshRuns();
    }
  } catch (err) { showError("eval-model", err.message); $("eval-model").focus(); }
}

export function setUpEvals() {
  activateRows($("evals"), "tr[data-eval]", (row) => { location.hash = `#evals/${encodeURIComponent(row.dataset.eval)}`; });
  activateRows($("eval-runs"), "tr[data-run]", (row) => showItems(row.dataset.run));
  $("eval-form").addEventListener("submit", rerun);
}
