"""Registry: API keys, files, fine-tuning jobs, fine-tuned models and the audit log, in one SQLite database."""
