import pytest
import torch

from tunesmith.models.argmax import argmax


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_the_same_indices_as_torch_argmax_ties_included(dtype):
    """bf16 logits tie often (8 bits of mantissa); both must answer the first maximum, or greedy answers move."""
    generator = torch.Generator().manual_seed(0)
    tied_rows = 0
    for rows, width in [(1, 1), (3, 7), (16, 49152), (256, 49152), (5, 100_003), (40, 33)]:
        values = (torch.randn(rows, width, generator=generator) * 3).to(dtype)
        top = values.max() + 1
        for row in range(0, rows, 2):  # every other row: its maximum at 1-3 random places
            places = torch.randint(0, width, (int(torch.randint(1, 4, (1,), generator=generator)),), generator=generator)
            values[row, places] = top
            tied_rows += len(set(places.tolist())) > 1
        assert torch.equal(argmax(values), values.argmax(-1))
    assert tied_rows > 10


def test_over_the_last_dimension_of_any_shape():
    values = torch.randn(2, 3, 50)
    assert argmax(values).shape == (2, 3)
    assert torch.equal(argmax(values), values.argmax(-1))
