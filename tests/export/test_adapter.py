"""A run's LoRA adapter as a GGUF adapter: llama.cpp's names and shapes, and base + B·A (at llama.cpp's
scale alpha/rank) equal to the merged model, tensor by tensor, in llama.cpp's own row order."""
import gguf
import numpy as np
import pytest

from tunesmith.export.run_export import export


def tensors(path) -> dict[str, np.ndarray]:
    """name → float32 array in numpy (out, in) order."""
    return {t.name: np.array(t.data, dtype=np.float32).reshape(t.shape[::-1]) for t in gguf.GGUFReader(path).tensors}


@pytest.fixture(scope="module")
def files(tiny_run, export_base, tmp_path_factory):
    out = tmp_path_factory.mktemp("adapter")
    return {"adapter": export(str(tiny_run), "lora", out / "adapter.gguf", "f32").files[0],
            "base": export(str(export_base), "gguf", out / "base.gguf", "f32").files[0],
            "merged": export(str(tiny_run), "gguf", out / "merged.gguf", "f32").files[0]}


def test_adapter_file_is_what_llama_cpp_lora_reads(files):
    fields = gguf.GGUFReader(files["adapter"]).fields
    assert fields["general.type"].contents() == "adapter" and fields["adapter.type"].contents() == "lora"
    assert fields["general.architecture"].contents() == "llama"
    adapter = tensors(files["adapter"])
    assert adapter["blk.0.attn_q.weight.lora_a"].shape == (8, 64)  # (r, in)
    assert adapter["blk.0.attn_q.weight.lora_b"].shape == (64, 8)  # (out, r)
    assert fields["adapter.lora.alpha"].contents() == 8.0  # the rank: peft's scale is folded into B
    assert len(adapter) == 2 * 7 * 2  # A and B for 7 linear modules in each of 2 blocks


def test_base_plus_adapter_is_the_merged_model(files):
    base, adapter, merged = tensors(files["base"]), tensors(files["adapter"]), tensors(files["merged"])
    adapted = {name.removesuffix(".lora_a") for name in adapter if name.endswith(".lora_a")}
    assert {"blk.1.attn_q.weight", "blk.1.attn_k.weight", "blk.0.ffn_down.weight"} <= adapted
    for name in sorted(adapted):
        update = adapter[f"{name}.lora_b"] @ adapter[f"{name}.lora_a"]  # scale alpha/rank = 1
        assert np.abs(update).max() > 1e-3, name  # training moved it
        assert np.allclose(base[name] + update, merged[name], atol=1e-5), name


def test_a_rank_stabilised_adapter_folds_alpha_over_root_rank(export_base, tmp_path):
    """lora.rslora: peft scales by alpha / √r; the GGUF adapter's B carries that scale, so base + B·A is still
    the merged model."""
    import json

    from tunesmith.config import load_config
    from tunesmith.train.sft import train

    rows = [{"messages": [{"role": "user", "content": f"Symbol for {n}?"}, {"role": "assistant", "content": f"{s}."}]}
            for n, s in [("gold", "Au"), ("tin", "Sn"), ("lead", "Pb")]]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    config = load_config(overrides={"model.base": str(export_base), "data.train": tmp_path / "train.jsonl",
                                    "out": tmp_path / "run", "train.max_steps": 3, "train.batch_size": 3,
                                    "train.lr": 2e-2, "lora.r": 4, "lora.alpha": 8, "lora.rslora": True})
    train(config)
    assert json.loads((tmp_path / "run" / "adapter" / "adapter_config.json").read_text())["use_rslora"] is True
    adapter = tensors(export(str(tmp_path / "run"), "lora", tmp_path / "adapter.gguf", "f32").files[0])
    base = tensors(export(str(export_base), "gguf", tmp_path / "base.gguf", "f32").files[0])
    merged = tensors(export(str(tmp_path / "run"), "gguf", tmp_path / "merged.gguf", "f32").files[0])
    name = "blk.0.attn_q.weight"
    update = adapter[f"{name}.lora_b"] @ adapter[f"{name}.lora_a"]
    assert np.abs(update).max() > 1e-4 and np.allclose(base[name] + update, merged[name], atol=1e-5)
