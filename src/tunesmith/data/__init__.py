"""data: training files before any model sees them — load and check rows, render them to tokens, make more of them.

formats → check (duplicates, pii) → render; augment (spec, sources, phrasings, paraphrase); redact; preference; hashing."""
