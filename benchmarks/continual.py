"""Naive sequential finetuning vs tunesmith's update on the examples/continual sequence: what each forgets.

Run as: .venv/bin/python benchmarks/continual.py [--variants naive,tunesmith] [--seeds 42,7] [--out runs/bench-continual]

The three updates of examples/continual (u1 elements 1-36; u2 elements 37-56 and three provisional names;
u3 the approved names of 104-108) are trained in sequence, each from the previous one. Update 1 is the
same for every variant (it has no parent) and is trained once. Variants differ only in how updates 2 and 3
continue:

  naive        continue the parent's adapter on the new data alone (plain sequential finetuning), 1 epoch:
               update 1's recipe
  naive2e      naive with 2 epochs, the passes over the new data that the shipped recipe makes
  tunesmith    the example configs as shipped (u2.yaml, u3.yaml): 2 epochs over the new data, three quarters
               of each step replayed from all earlier updates (share 0.75), and update 3 not replaying
               update 2's provisional names, which it corrects (drop_matching, 18 of update 2's 138 rows),
               at half update 2's learning rate (0.001; u3lr1 below)
  replay       1 epoch, a quarter of each step replayed (data.replay.share 0.25)
  replay50     1 epoch, half of each step replayed (share 0.5: the configs shipped until 2026-12-04)
  anchor       replay + L2 pull towards the parent's weights (model.parent.anchor 100)
  stack        replay50 with a new adapter stacked on the parent's merged weights (model.parent.adapter: stack)
  distill      replay50 with the replayed earlier rows trained towards the parent's answers
               (data.replay.earlier_loss: kl_to_parent) instead of their own tokens
  replay2e     2 epochs, share 0.75, update 3 replaying update 2's provisional names too
  distill2e    replay2e with earlier_loss: kl_to_parent
  replay3e     replay2e, with 3 epochs over update 3's corrections (5 elements, 90 rows)
  replay2d     the shipped recipe until 2026-12-05 (update 3 at lr 0.002; the name the search measured it under)
  replay3d     replay2d with 3 epochs over update 3's corrections
  replay2d875  replay2d with 7 of each u3 step's 8 examples replayed (share 0.875: 180 steps, u1's rows replayed
               about as often as in u2, whose 2 epochs over 138 rows took 138 steps)
  u3lr1        replay2d with update 3 at half the learning rate (0.001): its 90 steps over 6 replayed rows in 8
               are 7.5 times naive's 12, and a smaller step moves earlier facts less (shipped since 2026-12-05)

After each update every task so far is scored (held-out accuracy, eval phrasings never trained on) and
perplexity on general English (examples/general). With several --seeds the whole sequence runs once per seed
(OUT/seed-N/) and the table adds the means; one held-out item of u1 is 1.4 points and the seed alone moves a score
by several, so the issue's target (earlier tasks within 2 points of their best while the new task gains as naive
gains) is checked on the means and printed per variant, each margin with its paired standard error over the
seeds. Prints the table and the JSON (also OUT/results.json).
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch
import yaml
from rich.console import Console
from rich.table import Table

from tunesmith.config import load_config
from tunesmith.evaluate.continual import measure_suites
from tunesmith.train.sft import train

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "continual"
UPDATES = ["u1", "u2", "u3"]
TASKS = [("u1", "facts"), ("u2", "facts"), ("u2", "provisional"), ("u3", "facts")]


ONE_EPOCH = ("replay", "anchor", "replay50", "stack", "distill")  # the recipes before 2026-12-04
TWO_EPOCHS = ("replay2e", "distill2e", "replay3e", "replay2d", "replay3d", "replay2d875", "u3lr1")  # share 0.75
DROPS_PROVISIONAL = ("tunesmith", "replay2d", "replay3d", "replay2d875", "u3lr1")  # u3 drop_matching: ["(?i)unnil"]


def variant_config(update: str, variant: str, parent: Path | None, out: Path, max_steps: int | None, seed: int):
    """The example's config for `update`, with the variant's way of continuing, written beside the run."""
    raw = yaml.safe_load((EXAMPLE / f"{update}.yaml").read_text())
    raw["out"] = str(out)
    raw["train"]["seed"] = seed
    raw.pop("eval", None)  # scored below, the same way for every variant
    raw["data"]["train"] = str(REPO / raw["data"]["train"])
    raw["data"].pop("valid", None)  # validation loss is not what this compares; it only costs time here
    if parent is not None:
        raw["model"]["parent"] = {"run": str(parent)}
        replay = raw["data"]["replay"]
        if variant in ("naive", "naive2e"):
            raw["data"].pop("replay")
            raw["train"]["epochs"] = 2 if variant == "naive2e" else 1  # naive: update 1's recipe (u1.yaml)
        if variant in ONE_EPOCH:
            raw["train"]["epochs"], replay["share"] = 1, 0.25 if variant in ("replay", "anchor") else 0.5
        if variant in TWO_EPOCHS:
            raw["train"]["epochs"], replay["share"] = 2, 0.75
        if variant not in DROPS_PROVISIONAL:
            replay.pop("drop_matching", None)  # only the shipped u3.yaml sets it
        elif update == "u3":
            replay["drop_matching"] = ["(?i)unnil"]
        if variant == "anchor":
            raw["model"]["parent"]["anchor"] = 100.0
        if variant == "stack":
            raw["model"]["parent"]["adapter"] = "stack"
        if variant in ("replay3e", "replay3d") and update == "u3":
            raw["train"]["epochs"] = 3
        if variant == "replay2d875" and update == "u3":
            replay["share"] = 0.875
        if variant == "u3lr1" and update == "u3":
            raw["train"]["lr"] = 0.001
        if variant in ("distill", "distill2e"):
            replay["earlier_loss"] = "kl_to_parent"
    if max_steps is not None:
        raw["train"]["max_steps"] = max_steps
    out.parent.mkdir(parents=True, exist_ok=True)
    path = out.parent / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return load_config(path)


def score(model: str, upto: int, cache: Path, console: Console) -> dict[str, float]:
    """Accuracy on each task of updates 1..upto, and general perplexity; kept in `cache` for a rerun."""
    if cache.is_file():
        return json.loads(cache.read_text())
    suites = [(EXAMPLE / u / "suite.yaml").resolve() for u in UPDATES[:upto]]
    scores = measure_suites(model, suites, console)
    row = {f"{u}.{task}": scores[str((EXAMPLE / u / "suite.yaml").resolve())][task]["accuracy"]
           for u, task in TASKS if u in UPDATES[:upto]}
    row["general_ppl"] = scores[str((EXAMPLE / "u1" / "suite.yaml").resolve())]["general"]["perplexity"]
    cache.write_text(json.dumps(row))
    return row


def run_variant(variant: str, root: Path, first: Path, args, seed: int, console: Console, rows: list[dict]) -> None:
    parent = first
    for index, update in enumerate(UPDATES[1:], start=2):
        out = root / variant / update
        if not (out / "run.json").is_file():
            train(variant_config(update, variant, parent, out, args.max_steps, seed), console=console)
        seconds = json.loads((out / "run.json").read_text())["seconds"] if (out / "run.json").is_file() else 0
        rows.append({"seed": seed, "variant": variant, "after": update, "train_s": round(seconds),
                     **score(str(out), index, out / "bench_scores.json", console)})
        (args.out / "results.json").write_text(json.dumps(rows, indent=2))  # so far: a long run can be followed
        parent = out


def run_seed(seed: int, args, console: Console, rows: list[dict]) -> None:
    """The whole sequence with every update's train.seed set to `seed`: update 1 once, then each variant."""
    root = args.out / f"seed-{seed}"
    first = root / "u1"
    if not (first / "run.json").is_file():
        train(variant_config("u1", "base", None, first, args.max_steps, seed), console=console)
    base = load_config(EXAMPLE / "u1.yaml").model.base
    rows += [{"seed": seed, "variant": "-", "after": "base", **score(base, 3, args.out / "base_scores.json", console)},
             {"seed": seed, "variant": "-", "after": "u1", **score(str(first), 1, first / "bench_scores.json", console)}]
    for variant in args.variants.split(","):
        run_variant(variant, root, first, args, seed, console, rows)


def mean_rows(rows: list[dict]) -> list[dict]:
    """Per (variant, after): every score averaged over the seeds."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["variant"], row["after"]), []).append(row)
    means = []
    for (variant, after), group in groups.items():
        keys = [k for k in group[0] if k not in ("seed", "variant", "after")]
        means.append({"seed": "mean", "variant": variant, "after": after, "seeds": len(group),
                      **{k: sum(r[k] for r in group) / len(group) for k in keys}})
    return means


def target_checks(means: list[dict], rows: list[dict] = (), tolerance: float = 0.02) -> dict[str, dict]:
    """The issue's target on the seed means, per variant: every earlier task within `tolerance` of its best
    (u1's own score counts; u2.provisional is retired by u3's corrections), and each update's new task at least
    as high as naive finetuning reaches on it (naive and the variant start from the same update 1), against
    naive at 1 epoch and at 2 (naive2e) where each ran.

    Each check also gives `paired_se`: the standard error of its difference taken seed by seed over the per-seed
    `rows` (score minus the same seed's score where the mean is best; variant minus naive on the same seed), so a
    margin can be told from the seeds' noise (None with fewer than two seeds)."""
    by = {(row["variant"], row["after"]): row for row in means}
    per_seed = {(row["seed"], row["variant"], row["after"]): row for row in rows}
    seeds = sorted({row["seed"] for row in rows})

    def paired_se(key: str, a: tuple[str, str], b: tuple[str, str]) -> float | None:
        diffs = [per_seed[(s, *a)][key] - per_seed[(s, *b)][key] for s in seeds
                 if (s, *a) in per_seed and (s, *b) in per_seed]
        if len(diffs) < 2:
            return None
        mean = sum(diffs) / len(diffs)
        return math.sqrt(sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1) / len(diffs))

    checks = {}
    for variant in {row["variant"] for row in means} - {"-"}:
        names = [("-", "u1"), *[(variant, u) for u in UPDATES[1:] if (variant, u) in by]]
        history = [by[name] for name in names]
        kept, gained = [], []
        for index, row in enumerate(history[1:], start=2):
            for update, task in TASKS:
                key = f"{update}.{task}"
                if UPDATES.index(update) + 1 >= index or key not in row or (key == "u2.provisional" and index == 3):
                    continue
                best_at = max((i for i in range(index) if key in history[i]), key=lambda i: history[i][key])
                best = history[best_at][key]
                kept.append({"task": key, "after": UPDATES[index - 1], "score": row[key], "best": best,
                             "met": row[key] >= best - tolerance - 1e-9,
                             "paired_se": paired_se(key, names[index - 1], names[best_at])})
            new = f"{UPDATES[index - 1]}.facts"
            for baseline in ("naive", "naive2e"):  # each that ran: at its own epochs and at the shipped recipe's
                if (baseline, UPDATES[index - 1]) in by and variant != baseline:
                    naive = by[(baseline, UPDATES[index - 1])][new]
                    gained.append({"task": new, "score": row[new], "baseline": baseline, "naive": naive,
                                   "met": row[new] >= naive - tolerance - 1e-9,
                                   "paired_se": paired_se(new, names[index - 1], (baseline, UPDATES[index - 1]))})
        checks[variant] = {"kept": kept, "new_task": gained, "met": all(c["met"] for c in kept + gained)}
    return checks


def table(rows: list[dict]) -> Table:
    view = Table(title="Accuracy on each task after each update (held-out phrasings); general-English perplexity")
    for column in ["seed", "variant", "after", *[f"{u}.{t}" for u, t in TASKS], "general_ppl", "train_s"]:
        view.add_column(column, justify="left" if column in ("seed", "variant", "after") else "right")
    for row in rows:
        cells = [str(row["seed"]), row["variant"], row["after"]]
        cells += [f"{row[f'{u}.{t}']:.1%}" if f"{u}.{t}" in row else "" for u, t in TASKS]
        cells += [f"{row['general_ppl']:.2f}", f"{row['train_s']:.0f}" if "train_s" in row else ""]
        view.add_row(*cells)
    return view


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="naive,replay,tunesmith", help="comma-separated: naive, naive2e, tunesmith, replay, replay50, anchor, stack, distill, replay2e, distill2e, replay3e, replay2d, replay3d, replay2d875, u3lr1")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-continual"))
    parser.add_argument("--seeds", default="42", help="comma-separated train.seed values; the table adds their means, "
                        "and the target is checked on the means (one held-out item of u1 is 1.4 points)")
    parser.add_argument("--max-steps", type=int, help="cap every update's steps (a quick look)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's; 1 on a shared, busy machine)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    console = Console(stderr=True)
    args.out = args.out.resolve()
    rows: list[dict] = []
    for seed in [int(seed) for seed in args.seeds.split(",")]:
        run_seed(seed, args, console, rows)
    means = mean_rows(rows)
    checks = target_checks(means, rows)
    Console().print(table(rows + means))
    for variant, check in sorted(checks.items()):
        missed = [c for c in check["kept"] + check["new_task"] if not c["met"]]
        Console().print(f"{variant}: target {'met' if check['met'] else 'missed'}"
                        + "".join(f"; {c['task']} after {c.get('after', 'its update')}: {c['score']:.1%} vs "
                                  f"{c.get('best', c.get('naive')):.1%}" + (f" ({c['baseline']})" if "baseline" in c else "")
                                  + (f", paired SE {c['paired_se']:.1%}" if c["paired_se"] is not None else "")
                                  for c in missed))
    result = {"rows": rows, "means": means, "targets": checks}
    print(json.dumps(result, indent=2))
    (args.out / "results.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
