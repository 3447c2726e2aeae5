"""Base model resolution: the embedded default, a local Hugging Face directory, or a hub id."""
