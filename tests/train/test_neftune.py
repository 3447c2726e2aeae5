"""NEFTune: noise of the right size on training forwards' embeddings only, and a run with it resumes exactly."""
import pytest
import torch
from safetensors.torch import load_file

from tests.train.test_sft_run import run_config
from tunesmith.config import load_config
from tunesmith.train.neftune import add_neftune
from tunesmith.train.sft import train


def test_noise_is_uniform_of_alpha_over_root_tokens_times_width_in_training_forwards_only(model):
    ids = torch.randint(0, model.config.vocab_size, (2, 50))
    clean = model.get_input_embeddings()(ids).detach()
    handle = add_neftune(model, alpha=5.0)
    magnitude = 5.0 / (50 * model.config.hidden_size) ** 0.5
    model.train()
    noise = model.get_input_embeddings()(ids).detach() - clean
    assert noise.abs().max() <= magnitude * (1 + 1e-5) and noise.abs().max() > 0.9 * magnitude
    assert noise.mean().abs() < 0.05 * magnitude  # centred
    with torch.no_grad():  # a reference or validation forward
        assert torch.equal(model.get_input_embeddings()(ids), clean)
    model.eval()
    assert torch.equal(model.get_input_embeddings()(ids), clean)
    handle.remove()
    model.train()
    assert torch.equal(model.get_input_embeddings()(ids).detach(), clean)


def adapter(run_dir):
    return load_file(str(run_dir / "adapter" / "adapter_model.safetensors"))


def test_a_neftune_run_differs_from_a_plain_one_and_resumes_exactly(tiny_model_dir, tmp_path):
    for name in "abc":
        (tmp_path / name).mkdir()
    noisy = train(run_config(tiny_model_dir, tmp_path / "a", max_steps=4, neftune_alpha=5.0, save_every=2))
    plain = train(run_config(tiny_model_dir, tmp_path / "b", max_steps=4, save_every=2))
    assert noisy.final_loss != plain.final_loss
    paused = run_config(tiny_model_dir, tmp_path / "c", max_steps=4, neftune_alpha=5.0, save_every=2)
    train(paused, stop_after=2)
    resumed = train(paused, resume=True)
    assert resumed.final_loss == noisy.final_loss
    first, again = adapter(noisy.run_dir), adapter(resumed.run_dir)
    assert all(torch.equal(first[name], again[name]) for name in first)


def test_neftune_is_for_supervised_runs():
    with pytest.raises(ValueError, match="neftune_alpha is for supervised runs"):
        load_config(overrides={"train.method": "dpo", "train.neftune_alpha": 5.0})
