"""fp8 block linears: exact emulation numerics on the CPU, conversion report, off by default, _scaled_mm path."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from engine_core.config import TINY
from engine_core.engine import ShotStreamEngine, random_dit
from engine_core.fp8 import TARGETS, Fp8Linear, enable_fp8, fp8_error

CPU = torch.device("cpu")
E4M3 = torch.float8_e4m3fn
LATENT_HW = (TINY.latent_height, TINY.latent_width)
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _fake_quant(x: torch.Tensor, rowwise: bool) -> torch.Tensor:
    """Independent reference: scale (fp32) so the largest |x| per row or overall maps to 448, round to e4m3, scale back."""
    x = x.float()
    amax = x.abs().amax(dim=-1, keepdim=True) if rowwise else x.abs().amax()
    scale = amax / 448.0
    return (x / scale).to(E4M3).double() * scale.double()


def _linear(seed: int, device: torch.device = CPU, dtype: torch.dtype = torch.float32) -> nn.Linear:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Linear(48, 96).to(device, dtype)


@pytest.mark.parametrize("rowwise", [True, False])
def test_emulated_linear_equals_dequantized_product(rowwise):
    linear = _linear(0)
    x = torch.randn(2, 5, 48, generator=torch.Generator().manual_seed(1)) * torch.logspace(-2, 1, 48)
    fp8 = Fp8Linear(linear, "emulate", rowwise)
    assert fp8.weight.dtype == E4M3 and fp8.weight.shape == (96, 48)
    w, b = linear.weight.detach(), linear.bias.detach().double()
    want = _fake_quant(x, rowwise) @ _fake_quant(w, rowwise).T + b
    got = fp8(x)
    assert got.shape == (2, 5, 96)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)
    exact = linear(x).detach()
    rel = ((got - exact).norm() / exact.norm()).item()
    assert 1e-4 < rel < 0.06  # quantization happened, and only rounds


def test_enable_fp8_converts_the_block_linears_in_place():
    engine = ShotStreamEngine.random(TINY, device="cpu", seed=0, fp8=True)
    report = engine.fp8_report
    assert engine.fp8 and report.mode == "emulate" and report.scaling == "rowwise"
    expected = [f"blocks.{i}.{t}" for i in range(TINY.dit.num_layers) for t in TARGETS]
    assert list(report.converted) == expected and report.skipped == ()
    modules = dict(engine.dit.named_modules())
    assert all(isinstance(modules[name], Fp8Linear) for name in expected)
    assert isinstance(engine.dit.head.head, nn.Linear) and isinstance(engine.dit.text_embedding[0], nn.Linear)
    state = engine.dit.state_dict()
    assert state["blocks.0.self_attn.q.weight"].dtype == E4M3  # same key as the checkpoint's
    assert "blocks.1.ffn.2.bias" in state
    assert 0 < report.weight_error < 0.05
    assert "20 linears via emulate" in report.summary()
    story = engine.open_story("lanterns over a river", seed=3)
    story.start_shot("a boat passes", num_chunks=1)
    chunk = story.step()
    assert torch.isfinite(chunk.latents).all()
    with pytest.raises(ValueError, match="already converted"):
        enable_fp8(engine.dit)


def test_fp8_is_off_by_default_and_leaves_the_model_untouched():
    engine = ShotStreamEngine.random(TINY, device="cpu", seed=0, with_text_encoder=False)
    assert not engine.fp8 and engine.fp8_report is None
    assert not any(isinstance(m, Fp8Linear) for m in engine.dit.modules())
    fresh = random_dit(TINY, 0, CPU, torch.float32).state_dict()
    state = engine.dit.state_dict()
    assert state.keys() == fresh.keys()
    assert all(torch.equal(state[k], fresh[k]) for k in fresh)


def test_whole_forward_error_is_reported_small_and_nonzero():
    ref = random_dit(TINY, 0, CPU, torch.float32)
    converted = random_dit(TINY, 0, CPU, torch.float32)
    enable_fp8(converted)
    error = fp8_error(converted, ref, LATENT_HW)
    assert 1e-4 < error < 0.05
    assert fp8_error(random_dit(TINY, 0, CPU, torch.float32), ref, LATENT_HW) == 0.0  # the measure itself is exact


def test_bad_modes_are_refused():
    with pytest.raises(ValueError, match="unknown fp8 mode 'fast'"):
        enable_fp8(random_dit(TINY, 0, CPU, torch.float32), mode="fast")
    with pytest.raises(ValueError, match="unknown fp8 scaling 'blockwise'"):
        enable_fp8(random_dit(TINY, 0, CPU, torch.float32), scaling="blockwise")


def _scaled_mm_matches_emulation(device: torch.device, dtype: torch.dtype, rowwise: bool, tol: float) -> None:
    linear = _linear(4, device, dtype)
    x = torch.randn(3, 37, 48, generator=torch.Generator().manual_seed(5)).to(device, dtype)
    try:
        got = Fp8Linear(linear, "scaled_mm", rowwise)(x)
    except (RuntimeError, NotImplementedError) as err:
        if device.type == "cuda":
            raise
        pytest.skip(f"this torch has no CPU _scaled_mm for this case: {err}")
    want = Fp8Linear(linear, "emulate", rowwise)(x)
    assert got.dtype == dtype and got.shape == want.shape
    rel = ((got.float() - want.float()).norm() / want.float().norm()).item()
    assert rel < tol


@pytest.mark.parametrize("rowwise", [True, False])
def test_scaled_mm_path_matches_emulation_on_cpu(rowwise):
    """Where torch has a CPU _scaled_mm, the GPU code path (operand layout, scales) runs here too."""
    _scaled_mm_matches_emulation(CPU, torch.float32, rowwise, tol=1e-5)


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("rowwise", [True, False])
def test_scaled_mm_path_matches_emulation_on_cuda(rowwise):
    if torch.cuda.get_device_capability() < (8, 9):
        pytest.skip("no fp8 tensor cores")
    _scaled_mm_matches_emulation(torch.device("cuda"), torch.bfloat16, rowwise, tol=1e-2)


@pytest.mark.cuda
@needs_cuda
def test_cuda_engine_uses_scaled_mm_and_stays_close():
    device = torch.device("cuda")
    engine = ShotStreamEngine.random(TINY, device=device, seed=0, with_text_encoder=False, fp8=True)
    report = engine.fp8_report
    if torch.cuda.get_device_capability(device) >= (8, 9):
        assert report.mode == "scaled_mm", report.reason
    else:
        assert report.mode == "emulate"
    ref = random_dit(TINY, 0, device, torch.bfloat16)
    ref.attention = engine.dit.attention
    assert 1e-4 < fp8_error(engine.dit, ref, LATENT_HW) < 0.05
