// tunesmith web UI: plain JS over the JSON API; the key lives in localStorage and goes out as a Bearer header.
"use strict";
const $ = (id) => document.getElementById(id);
const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
let selectedJob = null;

function esc(text) { const d = document.createElement("div"); d.textContent = text == null ? "" : String(text); return d.innerHTML; }

async function api(path, options = {}) {
  const headers = { Authorization: "Bearer " + (localStorage.getItem("tunesmith-key") || ""), ...(options.headers || {}) };
  const response = await fetch(path, { ...options, headers });
  const body = await response.json();
  if (!response.ok) throw new Error((body.error && body.error.message) || response.statusText);
  return body;
}

async function allEvents(jobId) {  // oldest first
  let events = [], after = "";
  for (;;) {
    const page = await api(`/v1/fine_tuning/jobs/${jobId}/events?limit=1000` + (after ? `&after=${after}` : ""));
    events = events.concat(page.data);
    if (!page.has_more || !page.data.length) return events.reverse();
    after = page.data[page.data.length - 1].id;
  }
}

// One chart per svg: each series a polyline (class `cls`) over the steps; `range` fixes the y axis (else the data's).
const LOSS_SERIES = [{ key: "train_loss", cls: "train", label: "train loss", colour: "#1f6fd1" },
  { key: "valid_loss", cls: "valid", label: "valid loss", colour: "#d1741f", dash: true }];
const ACCURACY_SERIES = [{ key: "rewards/accuracy", cls: "train", label: "reward accuracy", colour: "#1f6fd1" },
  { key: "valid_rewards/accuracy", cls: "valid", label: "valid reward accuracy", colour: "#d1741f", dash: true }];
const MARGIN_SERIES = [{ key: "rewards/margin", cls: "train", label: "reward margin", colour: "#1f6fd1" },
  { key: "valid_rewards/margin", cls: "valid", label: "valid reward margin", colour: "#d1741f", dash: true }];

function drawCurves(svg, points, series, range = null) {  // points: [{step, <series keys>...}]
  const { width: W, height: H } = svg.viewBox.baseVal, L = 50, B = 30, T = 10, R = 10;
  const values = points.flatMap((p) => series.map((s) => p[s.key])).filter((v) => v != null);
  svg.dataset.points = points.length;
  if (!points.length) { svg.innerHTML = `<text x="${W / 2}" y="${H / 2}" text-anchor="middle">no metrics yet</text>`; return; }
  const maxStep = Math.max(...points.map((p) => p.step), 1);
  const [lo, hi] = range || [Math.min(...values), Math.max(...values)];
  const x = (s) => L + (W - L - R) * (maxStep === 1 ? 0.5 : (s - 1) / (maxStep - 1));
  const y = (v) => T + (H - T - B) * (hi === lo ? 0.5 : (hi - v) / (hi - lo));
  const line = (key) => points.filter((p) => p[key] != null).map((p) => `${x(p.step).toFixed(1)},${y(p[key]).toFixed(1)}`).join(" ");
  svg.innerHTML = `<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="#888"/><line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="#888"/>
    <text x="${L - 4}" y="${T + 10}" text-anchor="end" font-size="11">${hi.toFixed(3)}</text>
    <text x="${L - 4}" y="${H - B}" text-anchor="end" font-size="11">${lo.toFixed(3)}</text>
    <text x="${W - R}" y="${H - 8}" text-anchor="end" font-size="11">step ${maxStep}</text>` + series.map((s, i) =>
    `<polyline class="${s.cls}" fill="none" stroke="${s.colour}" stroke-width="2"${s.dash ? ' stroke-dasharray="5 3"' : ""} points="${line(s.key)}"/>
    <text x="${W - 160}" y="${T + 12 + 16 * i}" font-size="12" fill="${s.colour}">${s.label}</text>`).join("");
}

function drawMetrics(points) {  // the loss curve always; reward accuracy and margin when the job logs them (DPO)
  drawCurves($("loss-curve"), points, LOSS_SERIES);
  const rewarded = points.filter((p) => p["rewards/accuracy"] != null);
  $("reward-curves").hidden = !rewarded.length;
  if (rewarded.length) {
    drawCurves($("reward-accuracy"), rewarded, ACCURACY_SERIES, [0, 1]);
    drawCurves($("reward-margin"), rewarded, MARGIN_SERIES);
  }
}

function renderEvaluation(report) {
  const gates = (report.gates || []).map((g) => `<li class="${g.passed ? "pass" : "fail"}">${esc(g.message)}</li>`).join("");
  const rows = (report.tasks || []).flatMap((t) => Object.keys(t.candidate.metrics).map((m) =>
    `<tr><td>${esc(t.name)}</td><td>${esc(m)}</td><td>${esc(t.baseline.metrics[m])}</td><td>${esc(t.candidate.metrics[m])}</td><td>${esc(t.delta[m])}</td></tr>`)).join("");
  return `<p class="${report.passed ? "pass" : "fail"}">${report.passed ? "PASSED" : "FAILED"}</p><ul>${gates}</ul>
    <table><tr><th>Task</th><th>Metric</th><th>Baseline</th><th>Candidate</th><th>Change</th></tr>${rows}</table>`;
}

function renderLineage(lineage) {  // base → parents → the model, each with its data files and evaluations
  const short = (digest) => digest ? digest.slice(0, 12) + "…" : "unknown";
  const steps = lineage.chain.map((run) => {
    const data = run.data.map((d) => `<li>data ${esc(d.role)}: ${esc(d.file_id || d.path)} — ${esc(d.rows)} rows, sha256 ${esc(short(d.sha256))}</li>`).join("");
    const evals = run.evaluations.map((e) => `<li class="${e.passed ? "pass" : "fail"}">eval ${esc(e.suite)}: ${e.passed ? "passed" : "FAILED"}, report sha256 ${esc(short(e.reports.json.sha256))}</li>`).join("");
    return `<li>${esc(run.model || run.run_dir)} (${esc(run.method)}, started ${esc(run.started_at)} by ${esc(run.started_by)})<ul>${data}${evals}</ul></li>`;
  }).join("");
  return `<p>base ${esc(lineage.base_model)} (weights sha256 ${esc(short(lineage.base_model_sha256))})</p><ol class="lineage">${steps}</ol>`;
}

async function showLineage(jobId, model) {
  if (!model) { $("lineage").textContent = "No model yet."; $("model-card").textContent = "No model yet."; return; }
  try { $("lineage").innerHTML = renderLineage(await api(`/v1/models/${encodeURIComponent(model)}/lineage`)); }
  catch (err) { $("lineage").textContent = "No lineage record: " + err.message; }
  try { $("model-card").textContent = (await api(`/ui/api/jobs/${jobId}/model-card`)).text; }
  catch (err) { $("model-card").textContent = "No model card for this job."; }
}

async function showJob(jobId) {
  const job = await api(`/v1/fine_tuning/jobs/${jobId}`);
  $("job-detail").hidden = false;
  $("job-title").textContent = `${job.id} — ${job.status}`;
  const events = await allEvents(jobId);
  drawMetrics(events.filter((e) => e.type === "metrics").map((e) => e.data));
  $("events").innerHTML = events.map((e) => `<li>${esc(e.message)}</li>`).join("");
  try { $("evaluation").innerHTML = renderEvaluation(await api(`/ui/api/jobs/${jobId}/evaluation`)); }
  catch (err) { $("evaluation").textContent = "No evaluation report for this job."; }
  await showLineage(jobId, job.fine_tuned_model);
  return job;
}

async function refreshJobs() {
  const page = await api("/v1/fine_tuning/jobs?limit=100");
  $("jobs").querySelector("tbody").innerHTML = page.data.map((j) => `<tr class="clickable" data-job="${esc(j.id)}">
    <td>${esc(j.id)}</td><td>${esc(j.model)}</td><td><span class="status status-${esc(j.status)}">${esc(j.status)}</span></td>
    <td>${esc(j.fine_tuned_model || "")}</td><td>${esc(j.trained_tokens ?? "")}</td></tr>`).join("");
  if (selectedJob) {
    const job = page.data.find((j) => j.id === selectedJob);
    if (job && (!TERMINAL.has(job.status) || $("loss-curve").dataset.job !== job.id + job.status)) {
      await showJob(selectedJob);
      $("loss-curve").dataset.job = job.id + job.status;
    }
  }
}

function renderCheck(check) {
  const r = check.report || {};
  const list = (items, f) => items && items.length ? `<ul>${items.map((i) => `<li>${esc(f(i))}</li>`).join("")}</ul>` : "<p>none</p>";
  return `<h3>Data check: ${esc(check.filename)}</h3>
    ${list(r.files, (f) => `${f.role}: ${f.rows} rows, ${f.valid_rows} valid (${f.kind}, ${f.format})`)}
    <h4>Errors</h4>${list(r.errors, (e) => `line ${e.line}, ${e.field}: ${e.message}`)}
    <h4>Warnings</h4>${list(r.warnings, (w) => w.message)}
    <h4>PII</h4>${list(r.pii, (p) => `line ${p.line}: ${p.kind} — ${p.snippet}`)}
    <h4>Tokens</h4>${list(r.token_stats, (t) => `${t.count} rows, median ${t.median}, max ${t.max}, trained ${t.trained_tokens}`)}`;
}

async function refreshFiles() {
  const page = await api("/v1/files");
  $("files").querySelector("tbody").innerHTML = page.data.map((f) =>
    `<tr class="clickable" data-file="${esc(f.id)}"><td>${esc(f.id)}</td><td>${esc(f.filename)}</td><td>${f.bytes}</td></tr>`).join("");
}

async function refreshModels() {
  const models = (await api("/v1/models")).data.map((m) => m.id);
  const options = (ids) => ids.map((id) => `<option value="${esc(id)}">${esc(id)}</option>`).join("");
  $("base-model").innerHTML = options(models.filter((id) => !id.startsWith("ft:")));
  $("tuned-model").innerHTML = options(models.filter((id) => id.startsWith("ft:")).concat(models.filter((id) => !id.startsWith("ft:"))));
}

async function ask(model, target) {  // streamed: the answer grows as the server sends its SSE chunks
  target.textContent = "…";
  try {
    const response = await fetch("/v1/chat/completions", { method: "POST",
      headers: { "Content-Type": "application/json", Authorization: "Bearer " + (localStorage.getItem("tunesmith-key") || "") },
      body: JSON.stringify({ model, messages: [{ role: "user", content: $("prompt").value }], temperature: 0,
        max_tokens: Number($("max-tokens").value) || 32, stream: true }) });
    if (!response.ok) {
      const body = await response.json();
      throw new Error((body.error && body.error.message) || response.statusText);
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
        if (chunk.error) throw new Error(chunk.error.message);
        text += (chunk.choices[0] && chunk.choices[0].delta.content) || "";
        target.textContent = text;
      }
    }
    target.textContent = text;
  } catch (err) { target.textContent = "Error: " + err.message; }
  target.dataset.done = "1";
}

function show(view) {
  for (const name of ["jobs", "files", "playground"]) $(`${name}-view`).hidden = name !== view;
  const loaders = { jobs: refreshJobs, files: refreshFiles, playground: refreshModels };
  if (localStorage.getItem("tunesmith-key")) loaders[view]().catch((err) => { $("key-state").textContent = err.message; });
}

function route() { show((location.hash || "#jobs").slice(1).split("/")[0] || "jobs"); }

$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  localStorage.setItem("tunesmith-key", $("api-key").value.trim());
  $("api-key").value = "";
  $("key-state").textContent = "key saved";
  route();
});
$("jobs").addEventListener("click", (event) => {
  const row = event.target.closest("tr[data-job]");
  if (row) { selectedJob = row.dataset.job; $("loss-curve").dataset.job = ""; refreshJobs(); }
});
$("files").addEventListener("click", async (event) => {
  const row = event.target.closest("tr[data-file]");
  if (row) $("file-check").innerHTML = renderCheck(await api(`/ui/api/files/${row.dataset.file}/check`));
});
$("upload-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(); form.append("purpose", "fine-tune"); form.append("file", $("upload").files[0]);
  $("upload-error").textContent = "";
  try { await api("/v1/files", { method: "POST", body: form }); refreshFiles(); }
  catch (err) { $("upload-error").textContent = err.message; }
});
$("send").addEventListener("click", () => {
  ask($("base-model").value, $("answer-base"));
  ask($("tuned-model").value, $("answer-tuned"));
});
window.addEventListener("hashchange", route);
if (localStorage.getItem("tunesmith-key")) $("key-state").textContent = "key saved";
route();
setInterval(() => { if (!$("jobs-view").hidden && localStorage.getItem("tunesmith-key")) refreshJobs().catch(() => {}); }, 2000);
