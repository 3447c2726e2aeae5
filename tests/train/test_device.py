"""Device placement: each rank trains on its local GPU when there is one, else the CPU; batches follow."""
import pytest
import torch

from tests.tiny import tiny_tokenizer
from tunesmith.data.render import render_chat
from tunesmith.train.distributed import NoGpuForRankError, init_world, training_device
from tunesmith.train.loop import autocast
from tunesmith.train.packing import collate


def test_without_a_gpu_the_world_trains_on_the_cpu(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert training_device() == "cpu" and init_world("fsdp").device == "cpu"


def test_with_gpus_each_rank_takes_its_local_one(monkeypatch):
    chosen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert training_device() == "cuda:3" and chosen == [3]


def test_a_batch_moves_whole_and_autocast_follows_the_device_type():
    tokenizer = tiny_tokenizer()
    chat = [{"role": "user", "content": "Gold?"}, {"role": "assistant", "content": "Au"}]
    batch = collate([render_chat(tokenizer, chat, 64)] * 2, tokenizer.pad_token_id, 64, packing=True)
    moved = batch.to("meta")  # any other device: every tensor goes, the counts stay
    assert {t.device.type for t in (moved.input_ids, moved.targets, moved.position_ids, moved.attention_mask)} == {"meta"}
    assert moved.num_real_tokens == batch.num_real_tokens and batch.input_ids.device.type == "cpu"
    with autocast(True, "cpu"):
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16 and torch.is_autocast_enabled("cpu")


def test_a_process_beyond_the_gpus_is_refused_with_what_to_launch(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_device", lambda index: pytest.fail("no GPU to set"))
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(NoGpuForRankError, match=r"process 1 .* has 1\. .*--nproc.*CUDA_VISIBLE_DEVICES="):
        training_device()
