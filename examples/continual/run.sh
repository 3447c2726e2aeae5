#!/usr/bin/env bash
# The continual example end to end: three gated updates, each a version of `elements-assistant`.
# Run as: bash examples/continual/run.sh [HOME_DIR]      (from the repository root; ~15 min on 2 CPU cores)
#
# Each update trains from the previous version (model.parent), replays earlier data, and is evaluated on
# its own suite (gain over the previous version) and on every earlier suite (kept within 2 points / 2%).
# `models register` promotes a version only when all of that passed; `models list` shows the verdicts.
set -euo pipefail
home="${1:-runs/continual/home}"
tunesmith="${TUNESMITH:-.venv/bin/tunesmith}"
mkdir -p "$home"
"$tunesmith" keys create --home "$home" --name continual >/dev/null
for update in u1 u2 u3; do
  version="v${update#u}"
  if [ ! -f "runs/continual/$version/eval/update.json" ]; then
    "$tunesmith" train "examples/continual/$update.yaml" || echo "$version failed a gate: kept in runs/continual/$version, registered below but not promoted"
  fi
  "$tunesmith" models register elements-assistant "runs/continual/$version" --home "$home" || true  # a failing version stays unpromoted
done
"$tunesmith" models list --home "$home"
"$tunesmith" models show elements-assistant:latest --home "$home" | head -40
