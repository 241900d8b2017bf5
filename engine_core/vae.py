"""The Wan2.1 causal 3D VAE (diffusers' ``AutoencoderKLWan``), wrapped for streaming.

Why a wrapper: ShotStream needs two things the stock diffusers API does not give.

* History frames are re-encoded one frame at a time (each frame an independent 1-frame video),
  then normalised per channel: ``z = (mu - mean) / std``.
* Output should stream chunk by chunk. The decoder is causal in time and keeps a feature cache of
  the last frames of every causal conv; diffusers' ``_decode`` clears that cache at the start and
  end of every call and keeps it on the module, which many interleaved stories share. Here each
  :class:`StreamingDecoder` owns its cache, so decoding a shot chunk by chunk reproduces the
  whole-shot decode exactly, whichever other stories are decoding on the same module in between.

This drives ``AutoencoderKLWan.decoder``/``encoder`` with explicit ``feat_cache``/``feat_idx``
arguments, which is a private calling convention of diffusers: pin diffusers and keep
``tests/test_vae.py`` (streaming == whole decode) in CI.

The unit of streaming is one latent frame (:meth:`StreamingDecoder.decode_latent`: 1 video frame
for a shot's first latent, 4 after), so the decode lane can hand frames out as soon as each is done.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKLWan
from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d

from engine_core.config import VAEConfig


def build_vae(cfg: VAEConfig) -> AutoencoderKLWan:
    """Construct a randomly initialised VAE with the config's shape (weights are loaded later).

    ``latents_mean``/``latents_std`` of ``None`` keep diffusers' defaults, which are the published
    Wan2.1 statistics.
    """
    spatial = 2 ** (len(cfg.dim_mult) - 1)
    temporal = 2 ** sum(cfg.temperal_downsample)
    if (spatial, temporal) != (cfg.spatial_stride, cfg.temporal_stride):
        raise ValueError(
            f"VAEConfig is inconsistent: dim_mult {cfg.dim_mult} and temperal_downsample "
            f"{cfg.temperal_downsample} give strides spatial {spatial}, temporal {temporal}, but the config "
            f"declares spatial_stride {cfg.spatial_stride}, temporal_stride {cfg.temporal_stride}"
        )
    stats: dict[str, list[float]] = {}
    for name in ("latents_mean", "latents_std"):
        values = getattr(cfg, name)
        if values is not None:
            if len(values) != cfg.z_dim:
                raise ValueError(f"VAEConfig.{name} has {len(values)} values but z_dim is {cfg.z_dim}")
            stats[name] = list(values)
    vae = AutoencoderKLWan(
        base_dim=cfg.base_dim,
        z_dim=cfg.z_dim,
        dim_mult=list(cfg.dim_mult),
        num_res_blocks=cfg.num_res_blocks,
        temperal_downsample=list(cfg.temperal_downsample),
        scale_factor_temporal=cfg.temporal_stride,
        scale_factor_spatial=cfg.spatial_stride,
        **stats,
    )
    return vae.eval().requires_grad_(False)


def tune_for_cuda(vae: WanVAE) -> bool:
    """The engine calls this once at startup: speed settings for a VAE on CUDA; a no-op (False) elsewhere.

    Sets ``torch.backends.cudnn.benchmark`` (process-wide: the decoder calls its convs with the same few
    shapes every chunk, so the autotuned choice is reused) and stores the decoder's conv weights
    channels-last (:meth:`WanVAE.use_channels_last_3d`). The decode keeps running in the VAE's dtype.
    Within one process the streaming decode stays bit-exact (same shapes, same kernels); across
    processes cuDNN's autotuning may pick other kernels, so bf16 output can differ in the last bits.
    """
    if vae.device.type != "cuda":
        return False
    torch.backends.cudnn.benchmark = True
    vae.use_channels_last_3d()
    return True


def _count_causal_convs(module: torch.nn.Module) -> int:
    """Number of feature-cache slots a causal encoder/decoder pass uses (one per causal conv)."""
    return sum(isinstance(m, WanCausalConv3d) for m in module.modules())


class WanVAE:
    """A built or loaded ``AutoencoderKLWan`` plus the latent normalisation ShotStream uses.

    Stateless between calls (no module-level cache is touched), so one instance can serve many
    interleaved stories; per-story decode state lives in :class:`StreamingDecoder`.
    """

    def __init__(self, vae: AutoencoderKLWan) -> None:
        if vae.config.patch_size is not None:
            raise ValueError(
                f"this VAE has patch_size={vae.config.patch_size} (a Wan2.2-style VAE); "
                "only the Wan2.1 VAE (patch_size None) is supported"
            )
        self.vae = vae.eval().requires_grad_(False)
        self.z_dim: int = vae.config.z_dim
        self.in_channels: int = vae.config.in_channels
        self.spatial_stride: int = vae.config.scale_factor_spatial
        self.temporal_stride: int = vae.config.scale_factor_temporal
        # Kept in float32 and cast per call, like the reference, so moving the VAE to bf16 and back loses nothing.
        device = next(vae.parameters()).device
        self.mean = torch.tensor(vae.config.latents_mean, dtype=torch.float32, device=device)
        self.std = torch.tensor(vae.config.latents_std, dtype=torch.float32, device=device)
        if self.mean.numel() != self.z_dim or self.std.numel() != self.z_dim:
            raise ValueError(
                f"VAE latents_mean/latents_std have {self.mean.numel()}/{self.std.numel()} values "
                f"but z_dim is {self.z_dim}"
            )
        self.decoder_slots = _count_causal_convs(vae.decoder)
        self.encoder_slots = _count_causal_convs(vae.encoder)
        self.channels_last = False  # decoder inputs go NDHWC too once its weights are (use_channels_last_3d)

    @property
    def device(self) -> torch.device:
        return next(self.vae.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.vae.parameters()).dtype

    def use_channels_last_3d(self) -> None:
        """Store the decoder's (and post_quant_conv's) Conv3d weights NDHWC, which cuDNN's fast 3D kernels want.

        Per module, because ``vae.to(memory_format=torch.channels_last_3d)`` raises on this model: it
        also holds rank-4 tensors (the attention block's Conv2d weights, RMS-norm gains). Activations
        follow on CUDA (cuDNN returns NDHWC for NDHWC weights; the cache's slices and cats keep it);
        :meth:`StreamingDecoder.decode_latent` makes its input NDHWC too. CPU convs still return NCDHW.
        """
        convs = [self.vae.post_quant_conv, *self.vae.decoder.modules()]
        for module in convs:
            if isinstance(module, torch.nn.Conv3d):
                module.weight.data = module.weight.data.contiguous(memory_format=torch.channels_last_3d)
        self.channels_last = True

    def _stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and 1/std shaped ``[1, z, 1, 1, 1]`` in the VAE's current device/dtype.

        The reference normalises with ``scale = [mean, 1 / std]`` computed in the model dtype
        (``(mu - mean) * scale[1]`` to encode, ``z / scale[1] + mean`` to decode); in bf16 that
        differs from ``/ std`` in the last bit for many values, so we use the same form.
        """
        shape = (1, self.z_dim, 1, 1, 1)
        mean = self.mean.to(device=self.device, dtype=self.dtype).view(shape)
        inv_std = 1.0 / self.std.to(device=self.device, dtype=self.dtype).view(shape)
        return mean, inv_std

    @torch.no_grad()
    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """Encode each frame alone as a 1-frame video: ``[N,3,H,W]`` in [-1,1] -> normalised ``[N,z,h,w]``.

        This is how ShotStream re-encodes history frames. The posterior mean is used (no sampling).
        Frames run one at a time, as in the reference: batching them as N 1-frame videos differs
        from separate encodes in the last float bits (about 3e-7 on CPU), and a frame's latent
        should not depend on which other frames were encoded with it.
        """
        shape = tuple(frames.shape)
        if frames.ndim != 4:
            raise ValueError(f"encode_frames expects frames [N,{self.in_channels},H,W], got shape {shape}")
        n, c, h, w = shape
        if c != self.in_channels:
            raise ValueError(f"encode_frames expects {self.in_channels} colour channels, got {c} (shape {shape})")
        if n == 0 or h % self.spatial_stride or w % self.spatial_stride or h == 0 or w == 0:
            raise ValueError(
                f"encode_frames needs N >= 1 frames whose height and width are positive multiples of "
                f"{self.spatial_stride}; got shape {shape}"
            )
        if not frames.is_floating_point():
            raise ValueError(
                f"encode_frames expects float pixels in [-1,1], got dtype {frames.dtype}; "
                "convert uint8 frames with x.float() / 127.5 - 1"
            )
        x = frames.to(device=self.device, dtype=self.dtype).unsqueeze(2)  # [N,3,1,H,W]
        mean, inv_std = self._stats()
        latents = []
        for frame in x.split(1):
            # A fresh private cache per frame: each frame is the first (only) frame of its own video.
            cache: list = [None] * self.encoder_slots
            moments = self.vae.quant_conv(self.vae.encoder(frame, feat_cache=cache, feat_idx=[0]))
            latents.append((moments[:, : self.z_dim] - mean) * inv_std)
        return torch.cat(latents).squeeze(2)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Decode a whole shot ``[F,z,h,w]`` -> ``[1+4(F-1),3,H,W]`` in [-1,1] (the reference path)."""
        return self.stream_decoder().decode_chunk(latents)

    def stream_decoder(self) -> StreamingDecoder:
        """A fresh decoder for one shot; its chunks concatenate to exactly :meth:`decode` of the shot."""
        return StreamingDecoder(self)


class StreamingDecoder:
    """Decodes one shot chunk by chunk, carrying the causal-conv feature cache between chunks.

    Owns its cache, so several decoders can share one :class:`WanVAE` and be interleaved freely.
    Start a new one per shot (the reference clears the cache at every shot).
    """

    def __init__(self, vae: WanVAE) -> None:
        self._vae = vae
        self._cache: list = [None] * vae.decoder_slots
        self._latent_hw: tuple[int, int] | None = None
        self.latents_decoded = 0
        self.frames_decoded = 0

    @property
    def device(self) -> torch.device:
        return self._vae.device

    def check_chunk(self, latents: torch.Tensor) -> None:
        """Raise ``ValueError`` for latents this decoder cannot take, before any frame of them is decoded."""
        wan = self._vae
        shape = tuple(latents.shape)
        if latents.ndim != 4:
            raise ValueError(f"decode expects latents [F,{wan.z_dim},h,w], got shape {shape}")
        f, z, h, w = shape
        if z != wan.z_dim:
            raise ValueError(f"decode expects {wan.z_dim} latent channels, got {z} (shape {shape})")
        if f == 0 or h == 0 or w == 0:
            raise ValueError(f"decode needs at least one latent frame of non-zero size, got shape {shape}")
        if self._latent_hw is not None and (h, w) != self._latent_hw:
            raise ValueError(
                f"latent size {h}x{w} differs from this shot's earlier chunks ({self._latent_hw[0]}x"
                f"{self._latent_hw[1]}); start a new stream_decoder() for a new resolution"
            )

    @torch.no_grad()
    def decode_latent(self, latent: torch.Tensor) -> torch.Tensor:
        """Decode the shot's next latent frame ``[z,h,w]`` (or ``[1,z,h,w]``) -> ``[n,3,H,W]`` in [-1,1].

        n is 1 for the shot's first latent frame and 4 afterwards. This is the only decode path
        (:meth:`decode_chunk` loops over it), so frames can leave one latent at a time and still equal
        the whole-shot decode bit for bit. The result may be channels-last strided on CUDA.
        """
        wan = self._vae
        if latent.ndim == 3:
            latent = latent.unsqueeze(0)
        if latent.ndim != 4 or latent.shape[0] != 1:
            raise ValueError(
                f"decode_latent takes one latent frame [{wan.z_dim},h,w] or [1,{wan.z_dim},h,w], "
                f"got shape {tuple(latent.shape)}; use decode_chunk for several"
            )
        self.check_chunk(latent)
        mean, inv_std = wan._stats()
        x = latent.unsqueeze(2).to(device=wan.device, dtype=wan.dtype)  # [1,z,1,h,w]
        if wan.channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        # post_quant_conv is 1x1x1: per-frame application equals the whole-shot one (tests/test_vae.py checks).
        x = wan.vae.post_quant_conv(x / inv_std + mean)
        video = wan.vae.decoder(x, feat_cache=self._cache, feat_idx=[0], first_chunk=self.latents_decoded == 0)
        self.latents_decoded += 1
        self._latent_hw = (x.shape[-2], x.shape[-1])
        self.frames_decoded += video.shape[2]
        return torch.clamp(video, -1.0, 1.0)[0].permute(1, 0, 2, 3)

    def decode_chunk(self, latents: torch.Tensor) -> torch.Tensor:
        """Decode the next ``[F,z,h,w]`` normalised latents -> ``[n,3,H,W]`` in [-1,1].

        n is ``1 + 4(F-1)`` for the shot's first chunk and ``4F`` afterwards (9, then 12 for F=3);
        exactly the concatenation of :meth:`decode_latent` over the chunk's frames.
        """
        self.check_chunk(latents)
        return torch.cat([self.decode_latent(latent) for latent in latents])
