"""Which attention kernel the DiT uses: chosen once at startup, by a probe on the real device.

Order (fastest first): FlashAttention-3 through torch's flash-attention impl registry (needs the
``flash_attn_interface`` package and a torch that registers "FA3"), cuDNN SDPA, flash SDPA,
memory-efficient SDPA, math SDPA. A backend is chosen only after a tiny probe shaped like the
model's calls (its head_dim and dtype, keys a non-contiguous prefix view of a longer buffer) runs
and matches an explicit softmax; the reason each faster one was passed over is kept. On the CPU
``auto`` takes math SDPA, the exact one (speed there only matters for tests).

FA3 replaces torch's flash kernels process-wide (that is how torch's registry works): selecting
"fa3" activates it, selecting "flash" afterwards restores torch's built-in flash kernel.
"""

from __future__ import annotations

import importlib.util
import math
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.nn import attention as sdpa
from torch.nn.attention import SDPBackend, sdpa_kernel

NAMES = ("fa3", "cudnn", "flash", "efficient", "math")  # priority order for "auto" on CUDA
_SDPA = {
    "fa3": SDPBackend.FLASH_ATTENTION,  # FA3 takes over torch's flash ops once activated
    "cudnn": SDPBackend.CUDNN_ATTENTION,
    "flash": SDPBackend.FLASH_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "math": SDPBackend.MATH,
}
_CUDA_ONLY = ("fa3", "cudnn", "efficient")
FA3_MODULE = "flash_attn_interface"  # what the FA3 (Hopper) build of flash-attention installs


@dataclass(frozen=True)
class AttentionBackend:
    """The kernel ``attend`` runs, and why it was chosen."""

    name: str  # one of NAMES, or "default" (not selected: torch picks per call)
    reason: str
    sdpa_backends: tuple[SDPBackend, ...]  # what SDPA may use inside attend(); () = torch's own choice
    skipped: tuple[tuple[str, str], ...] = ()  # (name, why) for each faster backend passed over

    def describe(self) -> str:
        """One line for logs: the choice, its reason and why each faster one was skipped."""
        return f"{self.name} ({self.reason})" + "".join(f"; skipped {n}: {why}" for n, why in self.skipped)


UNSELECTED = AttentionBackend("default", "not selected: torch's per-call SDPA dispatch", ())


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, backend: AttentionBackend) -> torch.Tensor:
    """Mask-free attention over ``[B, L, H, D]`` tensors (prefix views of a cache are fine) -> ``[B, Lq, H*D]``."""
    qt, kt, vt = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    if backend.sdpa_backends:
        with sdpa_kernel(list(backend.sdpa_backends)):
            out = F.scaled_dot_product_attention(qt, kt, vt)
    else:
        out = F.scaled_dot_product_attention(qt, kt, vt)
    return out.transpose(1, 2).flatten(2)


def select_attention(device: torch.device, dtype: torch.dtype, head_dim: int, prefer: str = "auto") -> AttentionBackend:
    """The fastest backend that passes the probe (``auto``), or the forced one (ValueError if it cannot run)."""
    device = torch.device(device)
    if prefer != "auto" and prefer not in NAMES:
        raise ValueError(f"unknown attention backend {prefer!r}; choose 'auto' or one of {list(NAMES)}")
    if prefer != "auto":
        why = _unavailable(prefer, device, dtype, head_dim)
        if why is not None:
            available = [n for n in NAMES if n != prefer and _unavailable(n, device, dtype, head_dim) is None]
            raise ValueError(f"attention backend {prefer!r} is unavailable on {device} for {dtype}, "
                             f"head_dim {head_dim}: {why}; available: {available}")
        return _chosen(prefer, "forced by the caller", ())
    if device.type != "cuda":
        why = _unavailable("math", device, dtype, head_dim)
        if why is not None:
            raise RuntimeError(f"math SDPA does not work on {device} for {dtype}: {why}")
        return _chosen("math", f"exact SDPA on {device.type}", tuple((n, "auto takes math off CUDA") for n in NAMES[:-1]))
    skipped: list[tuple[str, str]] = []
    for name in NAMES:
        why = _unavailable(name, device, dtype, head_dim)
        if why is None:
            return _chosen(name, "fastest backend whose probe passed", tuple(skipped))
        skipped.append((name, why))
    raise RuntimeError(f"no attention backend works on {device} for {dtype}: {skipped}")


def _chosen(name: str, reason: str, skipped: tuple[tuple[str, str], ...]) -> AttentionBackend:
    if name != "fa3" and _fa3_active():
        _restore_flash()  # FA3 stays active only while selected: it replaces every flash SDPA call
    return AttentionBackend(name, reason, (_SDPA[name],), skipped)


def _unavailable(name: str, device: torch.device, dtype: torch.dtype, head_dim: int) -> str | None:
    """None if ``name`` runs correctly here, else why not."""
    if name in _CUDA_ONLY and device.type != "cuda":
        return "needs a CUDA device"
    if name == "fa3":
        return _activate_fa3(device, dtype, head_dim)
    if name == "flash" and _fa3_active():
        _restore_flash()  # probe torch's own flash kernel, not FA3
    return _probe(_SDPA[name], device, dtype, head_dim)


def _activate_fa3(device: torch.device, dtype: torch.dtype, head_dim: int) -> str | None:
    """Activate FA3 in torch's flash-attention registry and probe it; undo it if it does not work."""
    if not hasattr(sdpa, "activate_flash_attention_impl") or not hasattr(sdpa, "list_flash_attention_impls"):
        return f"torch {torch.__version__} has no flash-attention impl registry"
    if "FA3" not in sdpa.list_flash_attention_impls():
        return f"torch {torch.__version__} registers no FA3 impl"
    if importlib.util.find_spec(FA3_MODULE) is None:
        return f"FA3 package ({FA3_MODULE}) not installed"
    try:
        sdpa.activate_flash_attention_impl("FA3")
    except (ImportError, RuntimeError, ValueError) as err:
        return f"activating FA3 failed: {_first_line(err)}"
    why = _probe(SDPBackend.FLASH_ATTENTION, device, dtype, head_dim)
    if why is not None:
        _restore_flash()
    return why


def _fa3_active() -> bool:
    current = getattr(sdpa, "current_flash_attention_impl", None)
    return current is not None and current() == "FA3"


def _restore_flash() -> None:
    restore = getattr(sdpa, "restore_flash_attention_impl", None)
    if restore is not None:
        restore()


@torch.no_grad()
def _probe(backend: SDPBackend, device: torch.device, dtype: torch.dtype, head_dim: int) -> str | None:
    """Run one small call shaped like the model's (prefix views, Lq != Lk) and check it; None if it works."""
    gen = torch.Generator().manual_seed(0)
    heads = 2
    q = torch.randn(1, 80, heads, head_dim, generator=gen).to(device, dtype)[:, :37]
    k = torch.randn(1, 96, heads, head_dim, generator=gen).to(device, dtype)[:, :61]
    v = torch.randn(1, 96, heads, head_dim, generator=gen).to(device, dtype)[:, :61]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SDPA warns per rejected kernel; the error says enough
            out = attend(q, k, v, AttentionBackend("probe", "", (backend,)))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    except (RuntimeError, NotImplementedError, ValueError) as err:
        return f"probe failed: {_first_line(err)}"
    err = (out.float() - _softmax_attention(q, k, v)).abs().max().item()
    tol = 5e-3 if dtype == torch.float32 else 3e-2  # TF32 / bf16 round-off; a wrong kernel is off by ~1
    if not math.isfinite(err) or err > tol:
        return f"probe gave wrong output (max error {err:.2e} > {tol:.0e})"
    return None


def _softmax_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Explicit fp32 softmax attention, ``[B, L, H, D]`` -> ``[B, Lq, H*D]``."""
    q, k, v = (t.float().transpose(1, 2) for t in (q, k, v))
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
    return (weights @ v).transpose(1, 2).flatten(2)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
