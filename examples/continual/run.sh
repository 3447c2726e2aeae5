#!/usr/bin/env bash
# The continual example end to end: three gated updates, each a version of `elements-assistant`.
# Run as: bash examples/continual/run.sh [HOME_DIR]      (from the repository root; ~9 min on 2 CPU cores)
#
# Each update trains from the previous version (model.parent), replays earlier data, and is evaluated on
# its own suite (gain over the previous version) and on every earlier suite (kept within eval.max_points_lost:
# 6 points, perplexity 6%). `models register` promotes a version only when all of that passed; `models scores`
# prints every task after every version. Finished updates are not trained again; the default HOME_DIR is
# rebuilt from the runs each time, a HOME_DIR you pass must be new.
set -euo pipefail
home="${1:-runs/continual/home}"
tunesmith="${TUNESMITH:-.venv/bin/tunesmith}"
if [ -e "$home/tunesmith.sqlite" ]; then
  if [ -n "${1:-}" ]; then echo "$home already holds a registry: pass a new directory" >&2; exit 1; fi
  rm -rf "$home"  # the default home is this script's own: its versions are rebuilt from the runs
fi
mkdir -p "$home"
"$tunesmith" keys create --home "$home" --name continual >/dev/null
for update in u1 u2 u3; do
  version="v${update#u}"
  if [ ! -f "runs/continual/$version/eval/update.json" ]; then
    # audited in HOME_DIR; exit 1 with eval/update.json: a gate failed (registered below, not promoted); without: stop
    "$tunesmith" train "examples/continual/$update.yaml" --home "$home" || [ -f "runs/continual/$version/eval/update.json" ] || exit 1
  fi
  "$tunesmith" models register elements-assistant "runs/continual/$version" --home "$home" || true  # 1: not promoted
done
"$tunesmith" models list --home "$home"
"$tunesmith" models scores elements-assistant --home "$home"
