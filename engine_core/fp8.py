"""Optional fp8 GEMMs for the DiT's block linears (off by default: they trade a few % of accuracy for speed).

Converted: q, k, v, o of self- and cross-attention and ffn.0 / ffn.2 of every block. Weights are
quantized to float8_e4m3fn once, at conversion (after checkpoints load, so parameter names never
change on disk); activations are quantized on every call. Scales are rowwise (one per token for
activations, one per output channel for weights) when ``torch._scaled_mm`` takes them, else one per
tensor. On CUDA with fp8 tensor cores (compute capability >= 8.9) the product runs in
``torch._scaled_mm``; elsewhere an emulation (quantize, dequantize, matmul in the compute dtype)
gives the same quantization error, so CPU tests can check the numerics.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .kv_cache import SelfAttentionCache
from .rope import RotaryEmbedding
from .transformer import CausalWanTransformer, FrameRun

FP8 = torch.float8_e4m3fn
FP8_MAX = float(torch.finfo(FP8).max)  # 448
TARGETS = tuple(f"{attn}.{p}" for attn in ("self_attn", "cross_attn") for p in "qkvo") + ("ffn.0", "ffn.2")
MODES = ("scaled_mm", "emulate")
SCALINGS = ("rowwise", "tensorwise")


def quantize(x: torch.Tensor, rowwise: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``x ~= values * scale``: e4m3 values and an fp32 scale per row (``[..., 1]``) or per tensor (``[]``)."""
    xf = x.float()
    amax = xf.abs().amax(dim=-1, keepdim=True) if rowwise else xf.abs().amax()
    scale = amax.clamp(min=1e-12) / FP8_MAX
    return (xf / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8), scale


def dequantize(values: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return (values.float() * scale).to(dtype)


class Fp8Linear(nn.Module):
    """``nn.Linear`` with an e4m3 weight (same name, ``weight``) and per-call activation quantization."""

    def __init__(self, linear: nn.Linear, mode: str, rowwise: bool):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.mode, self.rowwise = mode, rowwise
        weight, scale = quantize(linear.weight.detach(), rowwise)
        self.register_buffer("weight", weight)  # [out, in] e4m3
        self.register_buffer("weight_scale", scale)  # fp32 [out, 1] (rowwise) or []
        self.bias = linear.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values, scale = quantize(x.reshape(-1, self.in_features), self.rowwise)
        if self.mode == "scaled_mm":
            # weight.t() is the column-major [in, out] operand _scaled_mm wants; scales [M, 1] x [1, out] or [] x [].
            y = torch._scaled_mm(values, self.weight.t(), scale_a=scale, scale_b=self.weight_scale.t(),
                                 out_dtype=x.dtype)
        else:
            y = dequantize(values, scale, x.dtype) @ dequantize(self.weight, self.weight_scale, x.dtype).t()
        if self.bias is not None:
            y = y + self.bias
        return y.unflatten(0, x.shape[:-1])


@dataclass(frozen=True)
class Fp8Report:
    """What ``enable_fp8`` converted, how, and the weights' quantization error."""

    mode: str  # "scaled_mm" (fp8 tensor cores) or "emulate"
    scaling: str  # "rowwise" or "tensorwise"
    reason: str  # why this mode / scaling
    converted: tuple[str, ...]  # module names, e.g. "blocks.0.self_attn.q"
    skipped: tuple[tuple[str, str], ...]  # (module name, why)
    weight_error: float  # largest relative (Frobenius) error of a dequantized weight

    def summary(self) -> str:
        return (f"{len(self.converted)} linears via {self.mode} ({self.scaling} scales; {self.reason}), "
                f"{len(self.skipped)} skipped, weight error <= {self.weight_error:.2%}")


def enable_fp8(dit: CausalWanTransformer, mode: str = "auto", scaling: str = "auto") -> Fp8Report:
    """Swap the block linears for ``Fp8Linear`` in place. ``mode``/``scaling``: "auto" or one of MODES/SCALINGS."""
    if any(isinstance(m, Fp8Linear) for m in dit.modules()):
        raise ValueError("this DiT is already converted to fp8")
    mode, scaling, reason = _choose(dit.device, dit.dtype, mode, scaling)
    converted: list[str] = []
    skipped: list[tuple[str, str]] = []
    weight_error = 0.0
    for index, block in enumerate(dit.blocks):
        for target in TARGETS:
            name = f"blocks.{index}.{target}"
            parent_name, _, child = target.rpartition(".")
            parent = block.get_submodule(parent_name)
            linear = getattr(parent, child)
            if not isinstance(linear, nn.Linear):
                skipped.append((name, f"{type(linear).__name__} is not an nn.Linear"))
                continue
            if mode == "scaled_mm" and (linear.in_features % 16 or linear.out_features % 16):
                skipped.append((name, "_scaled_mm needs in/out features divisible by 16"))
                continue
            fp8 = Fp8Linear(linear, mode, scaling == "rowwise")
            weight_error = max(weight_error, _relative_error(
                dequantize(fp8.weight, fp8.weight_scale, torch.float32), linear.weight.detach().float()))
            setattr(parent, child, fp8)
            converted.append(name)
    return Fp8Report(mode, scaling, reason, tuple(converted), tuple(skipped), weight_error)


def _choose(device: torch.device, dtype: torch.dtype, mode: str, scaling: str) -> tuple[str, str, str]:
    """(mode, scaling, reason): _scaled_mm where fp8 tensor cores exist and a probe matches the emulation."""
    if mode not in ("auto", *MODES):
        raise ValueError(f"unknown fp8 mode {mode!r}; choose 'auto' or one of {list(MODES)}")
    if scaling not in ("auto", *SCALINGS):
        raise ValueError(f"unknown fp8 scaling {scaling!r}; choose 'auto' or one of {list(SCALINGS)}")
    if mode == "emulate":
        return "emulate", "rowwise" if scaling == "auto" else scaling, "emulation forced by the caller"
    if mode == "auto" and not _fp8_tensor_cores(device):
        return "emulate", "rowwise" if scaling == "auto" else scaling, f"no fp8 tensor cores on {device}"
    failures = []
    for candidate in SCALINGS if scaling == "auto" else (scaling,):
        why = _probe_scaled_mm(device, dtype, candidate == "rowwise")
        if why is None:
            return "scaled_mm", candidate, f"torch._scaled_mm probe passed on {device}"
        failures.append(f"{candidate}: {why}")
    if mode == "scaled_mm":
        raise ValueError(f"torch._scaled_mm does not work on {device} for {dtype}: {'; '.join(failures)}")
    return "emulate", "rowwise" if scaling == "auto" else scaling, f"torch._scaled_mm failed ({'; '.join(failures)})"


def _fp8_tensor_cores(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 9)


@torch.no_grad()
def _probe_scaled_mm(device: torch.device, dtype: torch.dtype, rowwise: bool) -> str | None:
    """None if ``_scaled_mm`` runs here and matches the emulation, else why not."""
    gen = torch.Generator().manual_seed(0)
    linear = nn.Linear(64, 48, device="meta").to_empty(device=device).to(dtype)  # no draw from the global RNG
    linear.weight.copy_(torch.randn(48, 64, generator=gen))
    linear.bias.copy_(torch.randn(48, generator=gen))
    x = torch.randn(3, 37, 64, generator=gen).to(device, dtype)
    try:
        got = Fp8Linear(linear, "scaled_mm", rowwise)(x)
    except (RuntimeError, NotImplementedError, TypeError) as err:
        text = str(err).strip()
        return text.splitlines()[0] if text else type(err).__name__
    error = _relative_error(got.float(), Fp8Linear(linear, "emulate", rowwise)(x).float())
    return None if error < 2e-2 else f"output differs from the emulation by {error:.1%}"


def _relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got - want).norm() / want.norm().clamp(min=1e-30)).item()


@torch.no_grad()
def fp8_error(dit_fp8: CausalWanTransformer, dit_ref: CausalWanTransformer, latent_hw: tuple[int, int],
              frames: int = 3, timestep: float = 500.0, seed: int = 0) -> float:
    """Relative (Frobenius) error of one forward of ``dit_fp8`` against the unconverted ``dit_ref``.

    Same random latents and caption for both; each model fills its own fresh cache.
    """
    cfg = dit_ref.cfg
    device, dtype = dit_ref.device, dit_ref.dtype
    gen = torch.Generator().manual_seed(seed)
    latents = torch.randn(frames, cfg.in_dim, *latent_hw, generator=gen).to(device)
    caption = torch.randn(1, cfg.text_len, cfg.text_dim, generator=gen)
    _, ph, pw = cfg.patch_size
    hp, wp = latent_hw[0] // ph, latent_hw[1] // pw
    rope = RotaryEmbedding(cfg.head_dim, shot_phase=0.0).cos_sin(0, (0,) * frames, hp, wp, device)
    run = FrameRun(rope=rope, write_start=0, caption_rows=(0,) * frames)
    outputs = []
    for dit in (dit_fp8, dit_ref):
        cache = SelfAttentionCache(cfg.num_layers, frames * hp * wp, cfg.num_heads, cfg.head_dim, dtype, device)
        outputs.append(dit(latents, timestep, run, cache, dit.encode_text(caption)).float())
    return _relative_error(*outputs)
