"""registry: what the server remembers, in one SQLite database (db.py), every row owned by an API key.

API keys, uploaded files, fine-tuning jobs and their events, fine-tuned models, moderation guards, and the
append-only audit log."""
