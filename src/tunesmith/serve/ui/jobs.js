// Jobs page: the list, and one job — status with elapsed and remaining time, curves, checkpoints, the
// cancel / pause / resume buttons its state allows, the evaluation report, lineage, model card, events.
import { $, activateRows, api, duration, esc, showError, when } from "./api.js";
import { lineChart } from "./charts.js";

export const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
const ACTIONS = { cancel: (s) => !TERMINAL.has(s), pause: (s) => s === "queued" || s === "running", resume: (s) => s === "paused" };
const LOSS = [{ key: "train_loss", cls: "train", label: "training loss", colour: "#1f6fd1" },
  { key: "valid_loss", cls: "valid", label: "validation loss", colour: "#c2561a", dash: true }];
const LR = [{ key: "lr", cls: "lr", label: "learning rate", colour: "#6a3fb5" }];
const ACCURACY = [{ key: "token_accuracy", cls: "train", label: "token accuracy", colour: "#1f6fd1" },
  { key: "valid_token_accuracy", cls: "valid", label: "validation token accuracy", colour: "#c2561a", dash: true },
  { key: "accuracy", cls: "train", label: "accuracy", colour: "#1f6fd1" },
  { key: "valid_accuracy", cls: "valid", label: "validation accuracy", colour: "#c2561a", dash: true }];
const REWARD_ACCURACY = [{ key: "rewards/accuracy", cls: "train", label: "reward accuracy", colour: "#1f6fd1" },
  { key: "valid_rewards/accuracy", cls: "valid", label: "valid reward accuracy", colour: "#c2561a", dash: true }];
const REWARD_MARGIN = [{ key: "rewards/margin", cls: "train", label: "reward margin", colour: "#1f6fd1" },
  { key: "valid_rewards/margin", cls: "valid", label: "valid reward margin", colour: "#c2561a", dash: true }];
// A reinforcement job is judged by its grader's reward: its training loss is a surrogate (~0 by construction) and
// its validation loss the validation reward negated, so the loss chart gives way to this one
const GRADER_REWARD = [{ key: "reward", cls: "train", label: "reward", colour: "#1f6fd1" },
  { key: "valid_reward", cls: "valid", label: "validation reward", colour: "#c2561a", dash: true }];
let shown = { id: null, state: null };  // the job on screen, and the status it was drawn in

export function selectedJob() { return shown.id; }

async function allEvents(jobId) {  // oldest first
  let events = [], after = "";
  for (;;) {
    const page = await api(`/v1/fine_tuning/jobs/${jobId}/events?limit=1000` + (after ? `&after=${after}` : ""));
    events = events.concat(page.data);
    if (!page.has_more || !page.data.length) return events.reverse();
    after = page.data[page.data.length - 1].id;
  }
}

function drawMetrics(points, method) {
  const reinforcement = method === "reinforcement";
  $("reward-figure").hidden = !reinforcement;
  $("loss-figure").hidden = reinforcement;
  if (reinforcement) lineChart($("reward-curve"), points, GRADER_REWARD);
  else lineChart($("loss-curve"), points, LOSS);
  lineChart($("lr-curve"), points, LR);
  const accuracy = points.filter((p) => ACCURACY.some((s) => p[s.key] != null));
  $("accuracy-figure").hidden = !accuracy.length;
  if (accuracy.length) lineChart($("accuracy-curve"), accuracy, ACCURACY, [0, 1]);
  const rewarded = points.filter((p) => p["rewards/accuracy"] != null);
  $("reward-curves").hidden = !rewarded.length;
  if (rewarded.length) {
    lineChart($("reward-accuracy"), rewarded, REWARD_ACCURACY, [0, 1]);
    lineChart($("reward-margin"), rewarded, REWARD_MARGIN);
  }
}

// Elapsed since the worker started it; remaining from the seconds per step so far and the steps still to go
function timing(job, events, points) {
  const started = events.find((e) => e.message === "Fine-tuning job started");
  const end = job.finished_at || Date.now() / 1000, since = started ? started.created_at : job.created_at;
  const parts = [`created ${when(job.created_at)}`, `elapsed ${duration(end - since)}`];
  const last = points[points.length - 1], epochs = job.method[job.method.type].hyperparameters.n_epochs;
  if (last && last.epoch && typeof epochs === "number") {
    const total = Math.round(epochs * last.step / last.epoch);
    parts.push(`step ${last.step} of ${total}`);
    if (!TERMINAL.has(job.status)) {
      const stepped = events.filter((e) => e.type === "metrics").pop().created_at - since;
      parts.push(`remaining ≈ ${duration(stepped / last.step * (total - last.step))}`);
    }
  }
  if (job.finished_at) parts.push(`finished ${when(job.finished_at)}`);
  return parts.join(" · ");
}

// A reinforcement checkpoint shows the latest reward and validation reward logged up to its step (from the step
// metrics: the checkpoint object carries OpenAI's loss fields only, and here they are the surrogate's)
function checkpointColumns(points, reinforcement) {
  if (!reinforcement) return { names: ["Training loss", "Validation loss"], values: (c) => [c.metrics.train_loss, c.metrics.valid_loss] };
  const upTo = (step, key) => points.filter((p) => p.step <= step && p[key] != null).map((p) => p[key]).pop();
  return { names: ["Reward", "Validation reward"],
    values: (c) => [upTo(c.step_number, "reward"), upTo(c.step_number, "valid_reward")] };
}

function renderCheckpoints(checkpoints, points, reinforcement) {
  if (!checkpoints.length) return "none yet";
  const columns = checkpointColumns(points, reinforcement);
  return `<table><thead><tr><th>Step</th><th>Checkpoint model</th>${columns.names.map((n) => `<th>${n}</th>`).join("")}</tr></thead><tbody>
    ${checkpoints.map((c) => `<tr><td>${c.step_number}</td><td>${esc(c.fine_tuned_model_checkpoint)}</td>
      ${columns.values(c).map((v) => `<td>${esc(fmt(v))}</td>`).join("")}</tr>`).join("")}</tbody></table>`;
}

const fmt = (v) => v == null ? "—" : typeof v === "number" ? Number(v.toPrecision(4)).toString() : String(v);

export function renderEvaluation(report) {
  const gates = (report.gates || []).map((g) => `<li class="${g.passed ? "pass" : "fail"}">${esc(g.message)}</li>`).join("");
  const rows = (report.tasks || []).flatMap((t) => Object.keys(t.candidate.metrics).map((m) => {
    const better = t.higher_is_better ? t.higher_is_better[m] : null, change = t.delta[m];
    const verdict = better == null || change == null || change === 0 ? "" : (change > 0) === better ? "pass" : "fail";
    return `<tr><td>${esc(t.name)}</td><td>${esc(m)}</td><td>${esc(fmt(t.baseline.metrics[m]))}</td>
      <td>${esc(fmt(t.candidate.metrics[m]))}</td><td class="${verdict}">${esc(fmt(change))}</td></tr>`;
  })).join("");
  const regressions = (report.tasks || []).flatMap((t) => (t.items || []).filter((i) => i.change === "regressed")
    .slice(0, 5).map((i) => `<li><b>${esc(t.name)}</b>: ${esc(i.prompt)} — before: ${esc(i.baseline)}; after: ${esc(i.candidate)}</li>`)).join("");
  const suite = report.suite ? `<p>Suite ${esc(report.suite.name)}; before = ${esc(report.baseline ? report.baseline.ref || report.baseline.name : "baseline")},
    after = this job's model</p>` : "";
  const verdict = (report.passed ? "PASSED" : "FAILED") + (gates ? "" : " (the suite has no gates)");
  return `<p class="${report.passed ? "pass" : "fail"}">${verdict}</p>${suite}<ul>${gates}</ul>
    <div class="scroll"><table class="evaluation"><thead><tr><th>Task</th><th>Metric</th><th>Before</th><th>After</th><th>Change</th></tr></thead><tbody>${rows}</tbody></table></div>
    <h4>Regressions</h4>${regressions ? `<ul>${regressions}</ul>` : "<p>none</p>"}`;
}

export function renderLineage(lineage) {  // base → parents → the model, each with its data files and evaluations
  const short = (digest) => digest ? digest.slice(0, 12) + "…" : "unknown";
  const steps = lineage.chain.map((run) => {
    const data = run.data.map((d) => `<li>data ${esc(d.role)}: ${esc(d.file_id || d.path)} — ${esc(d.rows)} rows, sha256 ${esc(short(d.sha256))}</li>`).join("");
    const evals = run.evaluations.map((e) => `<li class="${e.passed ? "pass" : "fail"}">eval ${esc(e.suite)}: ${e.passed ? "passed" : "FAILED"}, report sha256 ${esc(short(e.reports.json.sha256))}</li>`).join("");
    return `<li>${esc(run.model || run.run_dir)} (${esc(run.method)}, started ${esc(run.started_at)} by ${esc(run.started_by)})<ul>${data}${evals}</ul></li>`;
  }).join("");
  return `<p>base ${esc(lineage.base_model)} (weights sha256 ${esc(short(lineage.base_model_sha256))})</p><ol class="lineage">${steps}</ol>`;
}

const attempt = (promise) => promise.then((value) => ({ value }), (error) => ({ error }));

function lineageHtml(found) { return found.value ? renderLineage(found.value) : esc("No lineage record: " + found.error.message); }

function evaluationHtml(job, found) {
  if (found.value) return renderEvaluation(found.value);
  if (!TERMINAL.has(job.status)) {
    return esc(`The evaluation runs after training (${job.suite ? `suite ${job.suite}` : "quick evaluation: validation loss before / after"}).`);
  }
  return esc(job.validation_file || job.suite ? "No evaluation report for this job."
    : "No evaluation: the job names no suite and has no validation file for the quick evaluation.");
}

// Everything is fetched first and drawn only if the job is still the one asked for: a poll that was under way
// when the user opened another job must not paint the old one over it.
export async function showJob(jobId) {
  const job = await api(`/v1/fine_tuning/jobs/${jobId}`);
  const model = job.fine_tuned_model, nothing = Promise.resolve(null);
  const [events, checkpoints, evaluation, lineage, card] = await Promise.all([
    allEvents(jobId), api(`/v1/fine_tuning/jobs/${jobId}/checkpoints?limit=100`),
    attempt(api(`/ui/api/jobs/${jobId}/evaluation`)),
    attempt(model ? api(`/v1/models/${encodeURIComponent(model)}/lineage`) : nothing),
    attempt(model ? api(`/ui/api/jobs/${jobId}/model-card`) : nothing)]);
  if (jobId !== shown.id) return job;
  $("job-detail").hidden = false;
  $("job-title").innerHTML = `${esc(job.id)} <span class="status status-${esc(job.status)}">${esc(job.status)}</span>`;
  for (const [action, allowed] of Object.entries(ACTIONS)) $(`job-${action}`).disabled = !allowed(job.status);
  $("job-error").textContent = job.error ? `${job.error.code}: ${job.error.message}` : "";
  $("job-chat").hidden = !model;
  if (model) $("job-chat").href = `#playground/${encodeURIComponent(model)}`;
  const section = job.method[job.method.type], hyper = section.hyperparameters;
  $("job-hyper").innerHTML = `<p>${esc(job.model)} → ${esc(model || "(not yet)")}, method ${esc(job.method.type)}; ` +
    Object.entries(hyper).map(([k, v]) => `${esc(k)} ${esc(v)}`).join(", ") + `; evaluation ${esc(job.suite || "quick")}</p>` +
    (section.grader ? `<h4>Grader</h4><pre id="job-grader-json">${esc(JSON.stringify(section.grader, null, 2))}</pre>` : "");
  const points = events.filter((e) => e.type === "metrics").map((e) => e.data);
  $("job-times").textContent = timing(job, events, points);
  drawMetrics(points, job.method.type);
  $("checkpoints").innerHTML = renderCheckpoints(checkpoints.data, points, job.method.type === "reinforcement");
  $("events").innerHTML = events.map((e) => `<li class="${e.level === "error" ? "fail" : ""}">${esc(when(e.created_at))} ${esc(e.message)}</li>`).join("");
  $("evaluation").innerHTML = evaluationHtml(job, evaluation);
  $("lineage").innerHTML = model ? lineageHtml(lineage) : "No model yet.";
  $("model-card").textContent = model ? (card.value ? card.value.text : "No model card for this job.") : "No model yet.";
  shown.state = job.status;
  return job;
}

export async function refreshJobs() {
  const page = await api("/v1/fine_tuning/jobs?limit=100");
  $("jobs").querySelector("tbody").innerHTML = page.data.map((j) => `<tr class="clickable" tabindex="0" data-job="${esc(j.id)}"
    ${j.id === shown.id ? 'aria-current="true"' : ""}><td>${esc(j.id)}</td><td>${esc(j.model)}</td>
    <td><span class="status status-${esc(j.status)}">${esc(j.status)}</span></td>
    <td>${esc(j.fine_tuned_model || "")}</td><td>${esc(j.trained_tokens ?? "")}</td></tr>`).join("");
  if (shown.id) {
    const job = page.data.find((j) => j.id === shown.id);
    if (job && !(TERMINAL.has(job.status) && shown.state === job.status)) await showJob(shown.id);
  }
}

export function openJob(jobId) { shown = { id: jobId, state: null }; }

async function act(action) {
  showError("job-action", "");
  try { await api(`/v1/fine_tuning/jobs/${shown.id}/${action}`, { method: "POST" }); await showJob(shown.id); await refreshJobs(); }
  catch (err) { showError("job-action", err.message); }
}

export function setUpJobs() {
  activateRows($("jobs"), "tr[data-job]", (row) => { location.hash = `#jobs/${row.dataset.job}`; });
  for (const action of Object.keys(ACTIONS)) $(`job-${action}`).addEventListener("click", () => act(action));
}
