"""The attention kernel choice: probed once, reported, forced on request, and really used by the DiT."""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch
from torch.nn.attention import SDPBackend

import engine_core.transformer as transformer
from engine_core.attention import NAMES, UNSELECTED, AttentionBackend, attend, select_attention
from engine_core.config import TINY
from engine_core.engine import ShotStreamEngine

CPU = torch.device("cpu")
HEAD_DIM = TINY.dit.head_dim
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _softmax_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Explicit float64 softmax(q k^T / sqrt(d)) v over [B, L, H, D] -> [B, Lq, H*D]."""
    q, k, v = (t.double().permute(0, 2, 1, 3) for t in (q, k, v))
    scores = torch.einsum("bhqd,bhkd->bhqk", q, k) / math.sqrt(q.shape[-1])
    return torch.einsum("bhqk,bhkd->bhqd", scores.softmax(-1), v).permute(0, 2, 1, 3).flatten(2)


def _prefix_views(device: torch.device, dtype: torch.dtype, head_dim: int) -> tuple[torch.Tensor, ...]:
    """q and k/v shaped like the DiT's calls: k/v token prefixes of a longer, interleaved buffer (non-contiguous)."""
    gen = torch.Generator().manual_seed(3)
    cache = torch.randn(1, 40, 2, 2, head_dim, generator=gen).to(device, dtype)  # [B, tokens, k|v, H, D]
    q = torch.randn(1, 7, 2, head_dim, generator=gen).to(device, dtype)
    k, v = cache[:, :19, 0], cache[:, :19, 1]
    assert not k.is_contiguous() and not v.is_contiguous()
    return q, k, v


def _available(device: torch.device, dtype: torch.dtype, head_dim: int) -> list[AttentionBackend]:
    found = []
    for name in NAMES:
        try:
            found.append(select_attention(device, dtype, head_dim, prefer=name))
        except ValueError:
            pass
    return found


def test_cpu_auto_picks_math_and_says_why_the_others_were_skipped():
    backend = select_attention(CPU, torch.float32, HEAD_DIM)
    assert backend.name == "math" and backend.sdpa_backends == (SDPBackend.MATH,)
    assert [name for name, _ in backend.skipped] == ["fa3", "cudnn", "flash", "efficient"]
    assert all(why for _, why in backend.skipped)
    assert all(f"skipped {name}" in backend.describe() for name in ("fa3", "cudnn", "flash", "efficient"))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_every_available_cpu_backend_matches_softmax_on_prefix_views(dtype):
    backends = _available(CPU, dtype, HEAD_DIM) + [UNSELECTED]
    assert "math" in [b.name for b in backends]
    q, k, v = _prefix_views(CPU, dtype, HEAD_DIM)
    want = _softmax_reference(q, k, v)
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    for backend in backends:
        got = attend(q, k, v, backend)
        assert got.shape == (1, 7, 2 * HEAD_DIM) and got.dtype == dtype
        torch.testing.assert_close(got.double(), want, rtol=0, atol=tol, msg=backend.name)


def test_forcing_an_unavailable_backend_names_the_available_ones():
    with pytest.raises(ValueError, match=r"'cudnn' is unavailable on cpu.*needs a CUDA device.*available: \[.*'math'"):
        select_attention(CPU, torch.float32, HEAD_DIM, prefer="cudnn")
    with pytest.raises(ValueError, match="unknown attention backend 'fastest'"):
        select_attention(CPU, torch.float32, HEAD_DIM, prefer="fastest")
    with pytest.raises(ValueError, match="'efficient' is unavailable"):
        ShotStreamEngine.random(TINY, device="cpu", with_text_encoder=False, attention="efficient")


def test_engine_sets_the_selected_backend_on_every_attention_call(monkeypatch):
    engine = ShotStreamEngine.random(TINY, device="cpu", seed=0, attention="flash")
    assert engine.attention.name == "flash" and engine.dit.attention is engine.attention
    seen: list[str] = []

    def counting(q, k, v, backend):
        seen.append(backend.name)
        return attend(q, k, v, backend)

    monkeypatch.setattr(transformer, "attend", counting)
    story = engine.open_story("a quiet harbour at dawn", seed=1)
    story.start_shot("boats drift in", num_chunks=1)
    story.step()
    layers = TINY.dit.num_layers
    assert len(seen) >= 2 * layers  # self- and cross-attention of every layer, at least once
    assert set(seen) == {"flash"}


def test_the_backend_reaches_the_kernel():
    """A backend that cannot run on the CPU must make the forward fail: the choice is not ignored."""
    engine = ShotStreamEngine.random(TINY, device="cpu", seed=0)
    story = engine.open_story("rain on a tin roof", seed=2)
    story.start_shot("drops fall", num_chunks=2)
    story.step()
    engine.dit.attention = AttentionBackend("efficient", "test: no CPU kernel", (SDPBackend.EFFICIENT_ATTENTION,))
    with pytest.raises(RuntimeError):
        story.step()


def test_attend_compiles_as_one_graph():
    backend = select_attention(CPU, torch.float32, HEAD_DIM, prefer="flash")
    q, k, v = _prefix_views(CPU, torch.float32, HEAD_DIM)
    compiled = torch.compile(lambda q, k, v: attend(q, k, v, backend), backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled(q, k, v), attend(q, k, v, backend), rtol=0, atol=0)


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("head_dim", [128, HEAD_DIM])
def test_cuda_auto_selection_and_backends(head_dim):
    """On the GPU: auto takes FA3 only where it can run (and then it is active), else says why."""
    device = torch.device("cuda")
    backend = select_attention(device, torch.bfloat16, head_dim)
    skipped = dict(backend.skipped)
    fa3_possible = (torch.cuda.get_device_capability(device)[0] == 9
                    and importlib.util.find_spec("flash_attn_interface") is not None
                    and "FA3" in getattr(torch.nn.attention, "list_flash_attention_impls", list)())
    if backend.name == "fa3":
        assert fa3_possible and torch.nn.attention.current_flash_attention_impl() == "FA3"
    else:
        assert skipped["fa3"]
    assert list(skipped) == list(NAMES[:NAMES.index(backend.name)])
    q, k, v = _prefix_views(device, torch.bfloat16, head_dim)
    want = _softmax_reference(q.cpu(), k.cpu(), v.cpu())
    available = _available(device, torch.bfloat16, head_dim)
    assert {"flash", "efficient", "math"} <= {b.name for b in available}
    for each in available:
        torch.testing.assert_close(attend(q, k, v, each).double().cpu(), want, rtol=0, atol=3e-2, msg=each.name)
    select_attention(device, torch.bfloat16, head_dim)  # leave the process with the auto choice active
