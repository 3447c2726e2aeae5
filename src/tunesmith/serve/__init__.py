"""serve: OpenAI-compatible API (files, fine-tuning jobs, models, completions), generation engine, job worker."""
