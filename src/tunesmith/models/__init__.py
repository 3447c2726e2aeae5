"""models: base models and what every caller needs to run one — find it, load it, prompt it, generate.

resolve (name, directory, hub id) → load (model, tokenizer) → chat (prompt and stop ids) → generate; classifier (heads);
kernel_cache (how many compiled CPU kernels oneDNN keeps: set when tunesmith is imported)."""
