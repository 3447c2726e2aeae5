// tunesmith web UI: plain JS modules over the JSON API; the key lives in localStorage and goes out as a Bearer
// header. Views are chosen by the URL hash: #files, #new[/MODEL], #jobs[/ID], #models, #evals[/ID],
// #playground[/MODEL[/MODEL]].
import { $, key } from "./api.js";
import { refreshEvals, setUpEvals } from "./evals.js";
import { refreshFiles, setUpFiles } from "./files.js";
import { openJob, refreshJobs, selectedJob, setUpJobs } from "./jobs.js";
import { refreshModels, setUpModels } from "./models.js";
import { loadJobForm, setUpJobForm } from "./newjob.js";
import { refreshPlayground, setUpPlayground } from "./playground.js";

const VIEWS = ["files", "new", "jobs", "models", "evals", "playground"];

function parts() { return (location.hash || "#jobs").slice(1).split("/").map(decodeURIComponent); }

async function load(view, args) {
  if (view === "files") return refreshFiles();
  if (view === "new") return loadJobForm(args[0]);
  if (view === "models") return refreshModels();
  if (view === "evals") return refreshEvals(args[0]);
  if (view === "playground") return refreshPlayground(args[0], args[1]);
  if (args[0] && args[0] !== selectedJob()) openJob(args[0]);
  return refreshJobs();
}

function route() {
  const [name, ...args] = parts(), view = VIEWS.includes(name) ? name : "jobs";
  for (const v of VIEWS) $(`${v}-view`).hidden = v !== view;
  for (const link of document.querySelectorAll("nav a")) {
    if (link.getAttribute("href") === `#${view}`) link.setAttribute("aria-current", "page"); else link.removeAttribute("aria-current");
  }
  if (view === "jobs" && !args[0]) $("job-detail").hidden = !selectedJob();
  if (key()) load(view, args).catch((err) => { $("key-state").textContent = err.message; });
}

$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  localStorage.setItem("tunesmith-key", $("api-key").value.trim());
  $("api-key").value = "";
  $("key-state").textContent = "key saved";
  route();
});
setUpFiles();
setUpJobForm();
setUpJobs();
setUpModels();
setUpEvals();
setUpPlayground();
window.addEventListener("hashchange", route);
if (key()) $("key-state").textContent = "key saved";
else $("key-state").textContent = "paste an API key (tunesmith keys create --home DIR)";
route();
setInterval(() => {  // follow running jobs while the jobs page is open
  if ($("jobs-view").hidden || !key()) return;
  refreshJobs().catch(() => {});
}, 2000);
