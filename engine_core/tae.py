"""A tiny causal preview decoder for Wan2.1 latents (the TAEHV architecture), streamed per latent frame.

Why: the Wan VAE decode costs about as much as denoising a chunk; a TAEHV decoder (~9.8M parameters,
2D convs only) decodes the same latents far faster at somewhat lower quality, which is what a live
preview wants. This module is the engine half: the network, a per-story streaming decoder with the
Wan :class:`~engine_core.vae.StreamingDecoder` interface, and a loader for the published weights. It
is written from the architecture's public description, not copied:

* ``madebyollin/taehv`` (MIT): ``taehv.py`` (``TAEHV.decoder``, ``MemBlock``, ``TGrow``,
  ``apply_model_with_memblocks``, ``frames_to_trim``, ``StreamingTAEHV``) and ``README.md``;
* ``ModelTC/LightX2V`` (Apache-2.0): ``lightx2v/models/video_encoders/hf/tae.py`` (the same network)
  and ``hf/wan/vae_tiny.py`` (``WanVAE_tiny(need_scaled=...)``).

Architecture (decoder only; Sequential indices are the published key names, see
:func:`engine_core.key_maps.expected_tae_decoder_shapes`)::

    0 Clamp 3*tanh(x/3)   1 conv3x3 z->256 (+bias)   2 ReLU
    3-5   MemBlock(256) x3   6 Upsample x2 (nearest)   7 TGrow(256, stride 1)   8 conv3x3 256->128
    9-11  MemBlock(128) x3  12 Upsample x2            13 TGrow(128, stride 2)  14 conv3x3 128->64
    15-17 MemBlock(64)  x3  18 Upsample x2            19 TGrow(64, stride 2)   20 conv3x3 64->64
    21 ReLU   22 conv3x3 64->3 (+bias); output clamped to [0, 1]

All convs are 2D, applied per frame. Time enters only through MemBlocks,
``relu(conv(cat[x_t, x_{t-1}]) + x_t)`` where ``x_{t-1}`` is the block's *input* at the previous
frame (zeros before the first), and through TGrow, a 1x1 conv to ``stride*C`` channels whose
channel groups become ``stride`` consecutive frames. Each latent frame thus yields 4 frames; the
published decode drops the first ``4 - 1 = 3`` frames of the whole video, so a shot of F latents
gives ``1 + 4(F-1)`` frames, the Wan VAE's count and order. Streaming per latent frame carries,
per MemBlock, its last input frame: that is exactly the state the whole-video decode would read.
The stride-1 TGrow at index 7 is still a learned 1x1 conv (``[256, 256, 1, 1]``).

Latent space (the one behavioural difference between the two published checkpoints):

* ``taew2_1`` (madebyollin/taehv, ``taew2_1.pth``, fp16; ``safetensors/taew2_1.safetensors``) decodes
  exactly what the DiT produces: its README says TAEHV applies no latent mean/std, and LightX2V
  runs it with ``need_scaled=False``. Our DiT latents are Wan-normalised (``(mu - mean) / std``,
  see :mod:`.vae`), so they go in unchanged.
* ``lighttaew2_1`` (lightx2v/Autoencoders, ``.pth``/``.safetensors``, fp32, distilled by LightX2V)
  has the same keys and shapes but was trained on raw Wan latents: LightX2V runs it with
  ``need_scaled=True``, i.e. ``z * std + mean`` (Wan2.1 statistics) before decoding. Using the
  wrong space does not fail, it just looks like a broken model; hence ``latent_space`` in the config
  and a warning when a file's name contradicts it.

Both files hold the whole autoencoder; ``encoder.*`` tensors are dropped by name. Keys, shapes and
count alone cannot tell taew2_1 from lighttaew2_1 (or from Hunyuan's ``taehv``, same shapes): the
caller picks the config.
"""

from __future__ import annotations

import inspect
import logging
import math
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .checkpoints import _assert_materialized, _cast, validate_state_dict
from .config import TINY
from .key_maps import CheckpointError, expected_tae_decoder_shapes, tae_keys_from_file

log = logging.getLogger(__name__)

LatentSpace = Literal["normalized", "raw"]
TAE_SUFFIXES = (".pth", ".pt", ".safetensors")
TAE_HINT = ("Use the published taew2_1 (madebyollin/taehv: taew2_1.pth or safetensors/taew2_1.safetensors) with "
            "TAEW2_1, or lighttaew2_1 (lightx2v/Autoencoders: lighttaew2_1.pth or .safetensors) with LIGHT_TAEW2_1.")


def _wan21_stats() -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The published Wan2.1 latent mean/std: diffusers' ``AutoencoderKLWan`` defaults, as :mod:`.vae` uses."""
    from diffusers import AutoencoderKLWan

    params = inspect.signature(AutoencoderKLWan.__init__).parameters
    return tuple(params["latents_mean"].default), tuple(params["latents_std"].default)


@dataclass(frozen=True)
class TinyDecoderConfig:
    """Shape of a TAEHV decoder and the latent space it was trained on.

    ``latents_mean``/``latents_std`` matter only for ``latent_space="raw"``: the decoder undoes the
    Wan normalisation with them; ``None`` means the published Wan2.1 statistics (16 channels).
    """

    name: str
    latent_channels: int = 16
    channels: tuple[int, int, int, int] = (256, 128, 64, 64)
    blocks_per_stage: int = 3
    time_upscale: tuple[bool, bool, bool] = (False, True, True)
    image_channels: int = 3
    latent_space: LatentSpace = "normalized"
    latents_mean: tuple[float, ...] | None = None
    latents_std: tuple[float, ...] | None = None

    spatial_stride = 8  # three x2 upsamples, fixed in the architecture

    def __post_init__(self) -> None:
        if len(self.channels) != 4 or len(self.time_upscale) != 3 or self.blocks_per_stage < 1:
            raise ValueError(f"{self.name}: a TAEHV decoder needs 4 widths, 3 time_upscale flags and >= 1 block per "
                             f"stage, got {self.channels}, {self.time_upscale}, {self.blocks_per_stage}")
        if self.latent_space not in ("normalized", "raw"):
            raise ValueError(f"{self.name}: latent_space must be 'normalized' or 'raw', got {self.latent_space!r}")
        if self.latent_space == "raw":
            mean, std = self.latent_stats()
            if len(mean) != self.latent_channels or len(std) != self.latent_channels:
                raise ValueError(f"{self.name}: latents_mean/std have {len(mean)}/{len(std)} values but the decoder "
                                 f"takes {self.latent_channels} latent channels")

    @property
    def time_strides(self) -> tuple[int, int, int]:
        a, b, c = (2 if up else 1 for up in self.time_upscale)
        return a, b, c

    @property
    def temporal_stride(self) -> int:
        """Video frames per latent frame (after the first latent, which yields 1)."""
        return math.prod(self.time_strides)

    def latent_stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        if self.latents_mean is None or self.latents_std is None:
            return _wan21_stats()
        return self.latents_mean, self.latents_std

    def expected_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every decoder tensor in the published names, from the independent table in :mod:`.key_maps`."""
        return expected_tae_decoder_shapes(self.latent_channels, self.channels, self.blocks_per_stage,
                                           self.time_strides, self.image_channels)


TAEW2_1 = TinyDecoderConfig(name="taew2_1")
LIGHT_TAEW2_1 = TinyDecoderConfig(name="lighttaew2_1", latent_space="raw")  # same shapes, raw Wan latents
# For tests: the TINY model's latents (4 channels, x8 / x4 strides); two blocks per stage so the key
# indices differ from the published ones and a hard-coded index cannot pass.
TINY_TAE = TinyDecoderConfig(name="tiny-tae", latent_channels=TINY.vae.z_dim, channels=(16, 8, 8, 4),
                             blocks_per_stage=2, latents_mean=TINY.vae.latents_mean, latents_std=TINY.vae.latents_std)


class _Clamp(nn.Module):
    """Soft clamp of the input latents into (-3, 3), as the published decoder's first layer."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(x / 3) * 3


def _conv3(cin: int, cout: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1, bias=bias)


class MemBlock(nn.Module):
    """Residual block that also sees its previous frame's input: ``relu(convs(cat[x, past]) + x)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(_conv3(2 * channels, channels), nn.ReLU(), _conv3(channels, channels), nn.ReLU(),
                                  _conv3(channels, channels))

    def forward(self, x: Tensor, past: Tensor) -> Tensor:
        return F.relu(self.conv(torch.cat([x, past], 1)) + x)


class TGrow(nn.Module):
    """Temporal upsampling: each frame -> ``stride`` frames (a 1x1 conv's channel groups, in time order)."""

    def __init__(self, channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(channels, channels * stride, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        return self.conv(x).reshape(n * self.stride, c, h, w)


class TinyDecoder(nn.Module):
    """The TAEHV decoder network (``self.decoder``, keys as published); stateless, shared by all stories."""

    def __init__(self, config: TinyDecoderConfig) -> None:
        super().__init__()
        self.config = config
        ch = config.channels
        layers: list[nn.Module] = [_Clamp(), _conv3(config.latent_channels, ch[0]), nn.ReLU()]
        for stage, stride in enumerate(config.time_strides):
            layers += [MemBlock(ch[stage]) for _ in range(config.blocks_per_stage)]
            layers += [nn.Upsample(scale_factor=2), TGrow(ch[stage], stride), _conv3(ch[stage], ch[stage + 1], False)]
        layers += [nn.ReLU(), _conv3(ch[3], config.image_channels)]
        self.decoder = nn.Sequential(*layers)
        self.eval().requires_grad_(False)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def stream_decoder(self) -> TaeStreamingDecoder:
        """A fresh decoder for one shot; its chunks concatenate to exactly :meth:`decode` of the shot."""
        return TaeStreamingDecoder(self)

    def decode(self, latents: Tensor) -> Tensor:
        """Decode a whole shot ``[F,z,h,w]`` -> ``[1+4(F-1),3,H,W]`` in [-1,1]."""
        return self.stream_decoder().decode_chunk(latents)


class TaeStreamingDecoder:
    """Decodes one shot latent frame by latent frame, carrying each MemBlock's last input frame.

    Same interface as the Wan :class:`~engine_core.vae.StreamingDecoder` (what the decode lane drives):
    owns its state, so decoders of many stories can share one :class:`TinyDecoder`, interleaved freely.
    Input latents are the DiT's (Wan-normalised); a ``raw`` config denormalises them first.
    """

    def __init__(self, tae: TinyDecoder) -> None:
        self._tae = tae
        self._memory: list[Tensor | None] = [None] * len(tae.decoder)
        self._latent_hw: tuple[int, int] | None = None
        self._denorm: tuple[Tensor, Tensor] | None = None
        cfg = tae.config
        if cfg.latent_space == "raw":  # made once here, not per latent: a host->device copy per call would sync
            mean, std = (torch.tensor(v, dtype=torch.float32, device=tae.device).view(1, -1, 1, 1)
                         for v in cfg.latent_stats())
            self._denorm = (mean, std)
        self.latents_decoded = 0
        self.frames_decoded = 0

    @property
    def device(self) -> torch.device:
        return self._tae.device

    def check_chunk(self, latents: Tensor) -> None:
        """Raise ``ValueError`` for latents this decoder cannot take, before any frame of them is decoded."""
        z = self._tae.config.latent_channels
        shape = tuple(latents.shape)
        if latents.ndim != 4:
            raise ValueError(f"decode expects latents [F,{z},h,w], got shape {shape}")
        f, c, h, w = shape
        if c != z:
            raise ValueError(f"decode expects {z} latent channels, got {c} (shape {shape})")
        if f == 0 or h == 0 or w == 0:
            raise ValueError(f"decode needs at least one latent frame of non-zero size, got shape {shape}")
        if self._latent_hw is not None and (h, w) != self._latent_hw:
            raise ValueError(f"latent size {h}x{w} differs from this shot's earlier chunks ({self._latent_hw[0]}x"
                             f"{self._latent_hw[1]}); start a new stream_decoder() for a new resolution")

    @torch.no_grad()
    def decode_latent(self, latent: Tensor) -> Tensor:
        """Decode the shot's next latent frame ``[z,h,w]`` (or ``[1,z,h,w]``) -> ``[n,3,H,W]`` in [-1,1].

        n is 1 for the shot's first latent frame (the 3 frames before it are the decoder's warm-up,
        dropped as the published decode does) and 4 afterwards. The only decode path, so streaming
        equals the whole-shot decode bit for bit.
        """
        tae = self._tae
        if latent.ndim == 3:
            latent = latent.unsqueeze(0)
        if latent.ndim != 4 or latent.shape[0] != 1:
            raise ValueError(f"decode_latent takes one latent frame [{tae.config.latent_channels},h,w] or "
                             f"[1,{tae.config.latent_channels},h,w], got shape {tuple(latent.shape)}; "
                             "use decode_chunk for several")
        self.check_chunk(latent)
        x = latent.to(device=tae.device, dtype=torch.float32)
        if self._denorm is not None:
            mean, std = self._denorm
            x = x * std + mean
        x = x.to(tae.dtype)
        for i, layer in enumerate(tae.decoder):
            if isinstance(layer, MemBlock):
                # Frames of this latent see their predecessor; the first sees the last one of the previous latent.
                first_past = self._memory[i] if self._memory[i] is not None else torch.zeros_like(x[:1])
                past = torch.cat([first_past, x[:-1]]) if x.shape[0] > 1 else first_past
                self._memory[i] = x[-1:].clone()  # a copy, so the memory does not pin all of x
                x = layer(x, past)
            else:
                x = layer(x)
        video = x.clamp(0, 1) * 2 - 1
        if self.latents_decoded == 0:
            video = video[tae.config.temporal_stride - 1:]
        self.latents_decoded += 1
        self._latent_hw = (latent.shape[-2], latent.shape[-1])
        self.frames_decoded += video.shape[0]
        return video

    def decode_chunk(self, latents: Tensor) -> Tensor:
        """Decode the next ``[F,z,h,w]`` latents -> ``[n,3,H,W]`` in [-1,1]: 9, then 12 frames for F=3."""
        self.check_chunk(latents)
        return torch.cat([self.decode_latent(latent) for latent in latents])


def random_tae_decoder(config: TinyDecoderConfig, seed: int = 0, device: str | torch.device = "cpu",
                       dtype: torch.dtype = torch.float32) -> TinyDecoder:
    """Reproducible random weights (He-scaled, so frames neither vanish nor saturate the output clamp):
    the preview decoder of a random-weights engine, for tests and wiring only."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        tae = TinyDecoder(config)
        for p in tae.parameters():
            p.data.normal_(0.0, 0.3 if p.ndim == 1 else (2.0 / p[0].numel()) ** 0.5)
    return tae.to(device, dtype)


# ------------------------------------------------------------------------------------------------
# Loading the published checkpoints
# ------------------------------------------------------------------------------------------------


def _read_tensors(path: Path, what: str) -> dict[str, Tensor]:
    """The flat ``{name: tensor}`` in a ``.pth``/``.pt`` (weights only, memory-mapped) or ``.safetensors`` file."""
    if path.suffix.lower() not in TAE_SUFFIXES:
        raise CheckpointError(f"{what}: {path} has suffix {path.suffix!r}; the published tiny decoders are "
                              f"{', '.join(TAE_SUFFIXES)} files. " + TAE_HINT, source=str(path))
    if not path.is_file():
        raise CheckpointError(f"{what}: file {path} not found. " + TAE_HINT, source=str(path))
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt", device="cpu") as f:
                sd: Any = {key: f.get_tensor(key) for key in f.keys()}
        else:
            try:
                sd = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as exc:  # legacy (non-zip) files cannot be memory-mapped: read them plainly
                if "mmap" not in str(exc):
                    raise
                sd = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"{what}: {path} cannot be read with torch.load(weights_only=True): it is not a torch "
                              f"file of plain tensors ({str(exc).splitlines()[0]}). " + TAE_HINT,
                              source=str(path)) from exc
    except Exception as exc:  # torch and safetensors raise several types for damaged or mislabelled files
        raise CheckpointError(f"{what}: cannot read {path} as a {path.suffix} file: {exc}. The file may be truncated "
                              "or of another format. " + TAE_HINT, source=str(path)) from exc
    if not isinstance(sd, Mapping) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in sd.items()):
        raise CheckpointError(f"{what}: {path} is not a flat state dict of named tensors (got {type(sd).__name__}). "
                              + TAE_HINT, source=str(path))
    return dict(sd)


def _warn_if_name_contradicts(path: Path, config: TinyDecoderConfig) -> None:
    """The two published files differ only in latent space; a file named for the other one is likely a mix-up."""
    stem = path.stem.lower()
    named_raw = stem.startswith("lighttae")
    named_normalized = stem.startswith("taew2_1")
    if (named_raw and config.latent_space != "raw") or (named_normalized and config.latent_space != "normalized"):
        log.warning("%s looks like %s, which decodes %s latents, but the config %s decodes %s latents; the preview "
                    "will look broken if this is a mix-up", path.name, "lighttaew2_1" if named_raw else "taew2_1",
                    "raw" if named_raw else "normalized", config.name, config.latent_space)


def load_tae_decoder(path: str | Path, config: TinyDecoderConfig = TAEW2_1, dtype: torch.dtype | None = None,
                     device: str | torch.device = "cpu") -> TinyDecoder:
    """A :class:`TinyDecoder` filled from a published ``taew2_1``/``lighttaew2_1`` file (``.pth`` or ``.safetensors``).

    The ``encoder.*`` half of the file is ignored by name; every other key must match the config
    exactly, else :class:`CheckpointError` names the missing, unexpected and mis-shaped keys. Built on
    the meta device and filled with ``assign=True`` (no second copy); ``dtype=None`` keeps the file's.
    """
    path = Path(path)
    what = f"tiny decoder ({config.name})"
    sd, encoder_keys = tae_keys_from_file(_read_tensors(path, what))
    if encoder_keys:
        log.info("%s: ignoring the %d encoder tensors of %s", what, len(encoder_keys), path)
    validate_state_dict(sd, config.expected_shapes(), what, str(path), layout=config.name, hint=TAE_HINT)
    _warn_if_name_contradicts(path, config)
    with torch.device("meta"):
        module = TinyDecoder(config)
    module.load_state_dict(_cast(sd, dtype), strict=True, assign=True)
    _assert_materialized(module, f"{what} from {path}")
    return module.to(device).eval().requires_grad_(False)
