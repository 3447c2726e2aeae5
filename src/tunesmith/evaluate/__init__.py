"""evaluate: judge a model on a suite of tasks beside a baseline; the suite's gates pass or fail the run.

suite (the YAML) → runner (baseline, then candidate) → tasks (one per kind) → gates → report (json, md, html)."""
