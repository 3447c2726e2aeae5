"""models/gguf_read_once.py: while materializing the embedded model, transformers' GGUF loader reads each file once."""
import gguf
import numpy as np
from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

from tunesmith.models.gguf_read_once import gguf_parsed_once


def tiny_gguf(path):
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(2)
    writer.add_context_length(64)
    writer.add_embedding_length(8)
    writer.add_feed_forward_length(16)
    writer.add_head_count(2)
    writer.add_head_count_kv(2)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_tensor("token_embd.weight", np.ones((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_transformers_reads_a_gguf_file_once_inside_and_as_before_outside(tmp_path, monkeypatch):
    path = tiny_gguf(tmp_path / "tiny.gguf")
    opened = []

    class CountingReader(gguf.GGUFReader):
        def __init__(self, *args, **kwargs):
            opened.append(args[0])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(gguf, "GGUFReader", CountingReader)
    original_map = gguf.get_tensor_name_map
    with gguf_parsed_once():
        first = load_gguf_checkpoint(str(path))
        second = load_gguf_checkpoint(str(path))
        assert gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, 2) is gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, 2)
    assert len(opened) == 1 and first["config"] == second["config"] and first["config"]["num_hidden_layers"] == 2
    assert gguf.GGUFReader is CountingReader and gguf.get_tensor_name_map is original_map  # put back
    load_gguf_checkpoint(str(path))
    assert len(opened) == 2
