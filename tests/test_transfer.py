"""Host-to-device uploads: same values as a plain ``.to``, without a host sync on CUDA."""

from __future__ import annotations

import pytest
import torch

from engine_core.transfer import upload


def test_upload_to_the_cpu_is_a_plain_conversion():
    t = torch.arange(6, dtype=torch.float32).view(2, 3)
    out = upload(t, torch.device("cpu"), torch.bfloat16)
    assert out.dtype == torch.bfloat16 and torch.equal(out.float(), t)
    assert upload(t, torch.device("cpu")) is t  # nothing to do: no copy


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_upload_to_cuda_stages_through_pinned_memory():
    t = torch.randn(4, 5)
    assert not t.is_pinned()
    out = upload(t, torch.device("cuda"), torch.bfloat16)
    assert out.is_cuda and out.dtype == torch.bfloat16
    assert torch.equal(out.cpu(), t.to(torch.bfloat16))
    pinned = torch.randn(3).pin_memory()
    assert torch.equal(upload(pinned, torch.device("cuda")).cpu(), pinned)
