// New-job form: model to start from, files, method (a reinforcement job's grader as JSON, checked by the server),
// hyperparameters ("auto" shown as what it resolves to), evaluation suite, suffix; the cost estimate for this
// machine before the job starts.
import { $, api, bytes, clearErrors, duration, esc, showError } from "./api.js";

const HYPER = ["n_epochs", "batch_size", "learning_rate_multiplier", "beta", "loss", "simpo_gamma",
  "compute_multiplier", "eval_interval", "eval_samples"];
const CHOSEN = ["loss"];  // chosen from a list (its value sent as text); the others are numbers
const METHOD_ONLY = { beta: "dpo", loss: "dpo", simpo_gamma: "dpo", compute_multiplier: "reinforcement",
  eval_interval: "reinforcement", eval_samples: "reinforcement" };  // the other hyperparameters belong to every method
const FIELDS = { model: "job-model", training_file: "job-training-file", validation_file: "job-validation-file",
  suite: "job-suite", suffix: "job-suffix", method: "job-method" };
// What the grader field starts with: rewards an answer that contains the row's `answer`, in any case
const EXAMPLE_GRADER = { type: "string_check", name: "answer", input: "{{ sample.output_text }}",
  reference: "{{ item.answer }}", operation: "ilike" };
let estimateSeq = 0, estimateTimer = null;

// An API error's `param` → the control to mark: method.dpo.hyperparameters.beta → hp-beta; a grader's field, from
// job creation (method.reinforcement.grader.operation) or from graders/validate (grader.operation) → the grader
function controlFor(param) {
  if (!param) return "job-form";
  const path = param.split(".");
  if (path[0] === "grader" || (path[0] === "method" && path.includes("grader"))) return "job-grader";
  const hyper = HYPER.find((name) => path.includes(name));
  if (hyper) return `hp-${hyper}`;
  const field = Object.keys(FIELDS).find((name) => param.split(".")[0] === name);
  return field ? FIELDS[field] : "job-form";
}

const option = (value, text) => `<option value="${esc(value)}">${esc(text)}</option>`;

export async function loadJobForm(startFrom) {  // startFrom: a model to preselect (#new/MODEL)
  const [models, files, suites] = await Promise.all([api("/v1/models"), api("/v1/files"), api("/ui/api/suites")]);
  const ids = models.data.map((m) => m.id), bases = ids.filter((id) => !id.startsWith("ft:") && !id.includes(":"));
  const tuned = ids.filter((id) => id.startsWith("ft:") && !id.includes(":ckpt-"));
  $("job-model").innerHTML = `<optgroup label="Base models">${bases.map((id) => option(id, id)).join("")}</optgroup>` +
    (tuned.length ? `<optgroup label="Continue a fine-tuned model">${tuned.map((id) => option(id, id)).join("")}</optgroup>` : "");
  const fileOptions = files.data.map((f) => f.status === "error"  // its data check refused it: no job can use it
    ? `<option value="${esc(f.id)}" disabled>${esc(f.filename)} (failed its data check)</option>`
    : option(f.id, `${f.filename} (${f.id})`)).join("");
  const [train, valid] = [$("job-training-file").value, $("job-validation-file").value];
  $("job-training-file").innerHTML = files.data.length ? fileOptions : option("", "upload a file first");
  $("job-validation-file").innerHTML = option("", "none") + fileOptions;
  if (train) $("job-training-file").value = train;
  if (valid) $("job-validation-file").value = valid;
  if (startFrom && ids.includes(startFrom)) $("job-model").value = startFrom;
  $("job-suite").innerHTML = option("", "quick evaluation: validation loss before / after") + suites.data.map((s) =>
    s.error ? `<option value="${esc(s.name)}" disabled>${esc(s.name)} (unusable: ${esc(s.error)})</option>`
      : option(s.name, `${s.name}: ${s.tasks.map((t) => t.name).join(", ")}${s.gates.length ? `; gates ${s.gates.join(", ")}` : ""}`)).join("");
  scheduleEstimate();
}

function hyperparameters() {  // {name: value} for the filled fields; a number field that is not a number is an error
  const values = {};
  for (const name of HYPER) {
    const input = $(`hp-${name}`), text = input.value.trim();
    if (METHOD_ONLY[name] && METHOD_ONLY[name] !== $("job-method").value) continue;
    if (!text || text === "auto") continue;
    if (CHOSEN.includes(name)) { values[name] = text; continue; }
    const value = Number(text);
    if (!isFinite(value)) throw Object.assign(new Error(`${text} is not a number: write one, or leave it empty for auto`), { control: input.id });
    values[name] = value;
  }
  return values;
}

// The grader textarea's JSON; not JSON, or not an object, is an error beside it before anything is sent
function grader() {
  const text = $("job-grader").value.trim(), control = "job-grader";
  if (!text) throw Object.assign(new Error("write the grader as JSON: a reinforcement job needs one"), { control });
  let value;
  try { value = JSON.parse(text); } catch (err) {
    throw Object.assign(new Error(`the grader is not valid JSON (${err.message}): fix it, e.g. quote every key and string`), { control });
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw Object.assign(new Error('the grader is a JSON object, e.g. {"type": "string_check", ...}'), { control });
  }
  return value;
}

function jobBody() {
  const chosen = $("job-method").value;  // classification trains as supervised: the file's label rows decide
  const method = chosen === "dpo" || chosen === "reinforcement" ? chosen : "supervised";
  const section = { hyperparameters: hyperparameters() };
  if (method === "reinforcement") section.grader = grader();
  const body = { model: $("job-model").value, training_file: $("job-training-file").value,
    method: { type: method, [method]: section } };
  if ($("job-validation-file").value) body.validation_file = $("job-validation-file").value;
  if ($("job-suite").value) body.suite = $("job-suite").value;
  if ($("job-suffix").value.trim()) body.suffix = $("job-suffix").value.trim();
  return body;
}

function showApiError(err, focus = false) {  // focus: after a submit, so keyboard and screen-reader users land on it
  const control = err.control || controlFor(err.param);
  showError(control, err.message);
  if (focus) (control === "job-form" ? $("create-job") : $(control)).focus();
}

function renderEstimate(answer) {
  for (const name of HYPER) {
    const out = $(`hp-${name}-resolved`);
    if (!(name in answer.hyperparameters)) { out.textContent = ""; continue; }
    out.textContent = answer.requested[name] === "auto" ? `auto → ${answer.hyperparameters[name]}` : `${answer.hyperparameters[name]}`;
  }
  const e = answer.estimate;
  if (!e) { $("estimate").innerHTML = `<p>No cost estimate: ${esc(answer.estimate_error)}</p>`; return; }
  const fits = e.peak_memory_bytes <= e.memory_bytes_available;
  $("estimate").innerHTML = `<h3>Estimate for this machine</h3><dl>
    <dt>Time</dt><dd id="estimate-time">${esc(duration(e.total_seconds))} (training ${esc(duration(e.train_seconds))})</dd>
    <dt>Peak memory</dt><dd id="estimate-memory" class="${fits ? "" : "fail"}">${esc(bytes(e.peak_memory_bytes))} of ${esc(bytes(e.memory_bytes_available))}${fits ? "" : " — does not fit"}</dd>
    <dt>Steps</dt><dd>${e.steps} over ${e.train_examples} examples (${esc(e.label)})</dd>
    <dt>Hardware</dt><dd>${esc(e.hardware)}</dd></dl>`;
}

// Errors are cleared only when the answer that replaces them is here, in the same step: an error shown beside
// its field does not blink out while a request is under way (a screen reader would announce it again).
async function estimate() {
  const seq = ++estimateSeq;
  if (!$("job-training-file").value) {
    clearErrors($("job-form"));
    $("estimate").innerHTML = "<p>Upload a training file to see the cost estimate.</p>";
    return;
  }
  let body;
  try { body = jobBody(); } catch (err) { clearErrors($("job-form")); showApiError(err); return; }
  $("estimate").setAttribute("aria-busy", "true");
  try {
    const answer = await api("/ui/api/estimate", { json: body });
    if (seq === estimateSeq) { clearErrors($("job-form")); renderEstimate(answer); }
  } catch (err) {
    if (seq === estimateSeq) {
      clearErrors($("job-form")); showApiError(err);
      $("estimate").innerHTML = "<p>No estimate until the form is valid.</p>";
    }
  } finally { if (seq === estimateSeq) $("estimate").removeAttribute("aria-busy"); }
}

function scheduleEstimate() { clearTimeout(estimateTimer); estimateTimer = setTimeout(estimate, 300); }

// POST /v1/fine_tuning/alpha/graders/validate: OK with the grader's type and name, or the server's error beside
// the field (its message names the grader's field, e.g. grader.operation)
async function checkGrader() {
  const status = $("job-grader-status");
  status.textContent = "";
  showError("job-grader", "");
  try {
    const checked = (await api("/v1/fine_tuning/alpha/graders/validate", { json: { grader: grader() } })).grader;
    status.textContent = `OK: ${checked.type} grader ${JSON.stringify(checked.name)}`;
  } catch (err) { showError("job-grader", err.message); }
}

function showMethodFields() {  // each method's own: DPO's beta and loss, reinforcement's grader and hyperparameters
  const method = $("job-method").value;
  for (const field of $("job-form").querySelectorAll("[data-method]")) field.hidden = field.dataset.method !== method;
}

async function isClassificationFile(fileId) {
  const check = await api(`/ui/api/files/${encodeURIComponent(fileId)}/check`);
  return (check.report || {}).kind === "classification";
}

async function createJob(event) {
  event.preventDefault();
  clearTimeout(estimateTimer); estimateSeq += 1;  // an estimate still under way must not redraw the errors
  $("estimate").removeAttribute("aria-busy");
  try {
    const body = jobBody();
    if ($("job-method").value === "classification" && !(await isClassificationFile(body.training_file))) {
      clearErrors($("job-form"));
      showError("job-method", "classification trains on rows with label or labels; this training file has none");
      $("job-method").focus();
      return;
    }
    $("create-job").disabled = true;
    const job = await api("/v1/fine_tuning/jobs", { json: body });
    location.hash = `#jobs/${job.id}`;
  } catch (err) { $("create-job").disabled = false; clearErrors($("job-form")); showApiError(err, true); }
  finally { $("create-job").disabled = false; }
}

export function setUpJobForm() {
  $("job-form").addEventListener("submit", createJob);
  $("job-form").addEventListener("change", scheduleEstimate);
  $("job-form").addEventListener("input", (event) => {
    if (event.target.matches("input")) scheduleEstimate();
    if (event.target.id === "job-grader") $("job-grader-status").textContent = "";  // an OK no longer holds
  });
  $("job-method").addEventListener("change", showMethodFields);
  $("check-grader").addEventListener("click", checkGrader);
  $("job-grader").value = JSON.stringify(EXAMPLE_GRADER, null, 2);
  showMethodFields();
}
