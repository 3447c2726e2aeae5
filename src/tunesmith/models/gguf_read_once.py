"""Read a GGUF file once while transformers turns it into a model: its loader parses the file for the config, again
for the tokenizer and again for the weights, and rebuilds gguf's tensor-name map for every module it walks.

`materialize_embedded` (models/resolve.py) loads the embedded GGUF once per machine, on the first run, so this is
time a newcomer's first `tunesmith demo` waits for. Measured (SmolLM2-135M-Instruct Q4_1, a 2-core Xeon, an empty
cache each time, the whole process, 2026-12-06): 17.2 / 17.3 s before, 9.1 / 9.6 s with it; the saved checkpoint,
tokenizer and template are byte-identical (sha256). Of the 17 s, cProfile put ~7 s in parsing the file's fields
three times (49,152 vocabulary strings and the merges) and ~5 s in 397 rebuilds of the tensor-name map. Both
stand-ins are scoped to the `with` block and keyed by their arguments: a reader is a read-only view of its file,
and the name map a pure function of (architecture, layers).
"""
from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gguf_parsed_once() -> Iterator[None]:
    """Inside: `gguf.GGUFReader(path)` returns one reader per path, `gguf.get_tensor_name_map` one map per
    (architecture, layers). transformers imports both from `gguf` at each call, so it picks these up."""
    import gguf

    readers: dict[str, gguf.GGUFReader] = {}
    original_reader, original_map = gguf.GGUFReader, gguf.get_tensor_name_map

    def reader(path, *args, **kwargs):
        key = str(path)
        if args or kwargs:  # another mode (writable, say): not shared
            return original_reader(path, *args, **kwargs)
        if key not in readers:
            readers[key] = original_reader(path)
        return readers[key]

    gguf.GGUFReader, gguf.get_tensor_name_map = reader, functools.lru_cache(maxsize=None)(original_map)
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = original_reader, original_map
