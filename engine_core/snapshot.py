"""Story snapshots: a story's state between shots, as bytes a game can keep with its save.

Between shots a story is small. The local KV cache is rebuilt for every shot and the global context
cache is refilled at every shot start, so what a later shot can still read is only: the global
caption and seed (each shot's noise comes from ``shot_seed(seed, index)``), the decoded length of
every earlier shot (the history plan), the text embeddings of the shots later history can route to,
and the latents of the frames later history can sample. :meth:`Story.snapshot` encodes the frames it
still keeps (each alone, as the story would when it needs them), so a snapshot holds latents, never
pictures. At full size that is at most 6 captions of ``512 x 4096`` bf16 (4 MiB each) and about 60
history latents of ``16 x 60 x 104`` bf16 (195 KiB each): under 40 MiB.

Wire format (version 1), all little-endian::

    b"SHOTSNAP" | u32 version | u64 header length | header (UTF-8 JSON) | payload (safetensors)

The header says what it is (``format``, ``version``), which model made it (:class:`ModelIdentity`),
the story (caption, seed, shot lengths, which tensors are which) and the payload's SHA-256, so a
truncated or altered snapshot is refused before anything reads it.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import asdict, dataclass

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

MAGIC = b"SHOTSNAP"
FORMAT = "shotstream.snapshot"
VERSION = 1
_PREFIX = struct.Struct("<8sIQ")


class SnapshotError(ValueError):
    """A snapshot that cannot be used here: damaged, of another format, or from another model."""


@dataclass(frozen=True)
class ModelIdentity:
    """What must match for a snapshot's next shots to be the original's: the model's configuration,
    its weights (label and a fingerprint of the tensors), the story's decoder and the compute dtype."""

    config: str
    weights: str
    fingerprint: str
    decoder: str
    dtype: str

    def mismatches(self, other: ModelIdentity) -> list[str]:
        """Human-readable differences, ``[]`` when they match."""
        return [f"{name}: the snapshot has {mine!r}, this engine {theirs!r}"
                for name, mine, theirs in zip(asdict(self), asdict(self).values(), asdict(other).values())
                if mine != theirs]


@dataclass(frozen=True)
class StorySnapshot:
    """A story between shots. Build with :meth:`Story.snapshot`; continue with ``engine.restore_story``."""

    identity: ModelIdentity
    global_caption: str
    seed: int
    shot_lengths: tuple[int, ...]  # decoded frames of every finished shot
    captions: dict[int, torch.Tensor]  # text embedding [text_len, text_dim] of each shot later history may use
    history_latents: dict[tuple[int, int], torch.Tensor]  # (shot, frame) -> latent [z, h, w] (CPU)

    @property
    def next_shot_index(self) -> int:
        return len(self.shot_lengths)

    def to_bytes(self) -> bytes:
        tensors = {f"caption/{i}": t.contiguous() for i, t in self.captions.items()}
        tensors.update({f"latent/{s}/{f}": t.contiguous() for (s, f), t in self.history_latents.items()})
        payload = save_tensors(tensors)
        header = json.dumps({
            "format": FORMAT, "version": VERSION, "identity": asdict(self.identity),
            "global_caption": self.global_caption, "seed": self.seed, "shot_lengths": list(self.shot_lengths),
            "payload_sha256": hashlib.sha256(payload).hexdigest(), "payload_bytes": len(payload),
        }).encode()
        return _PREFIX.pack(MAGIC, VERSION, len(header)) + header + payload

    @classmethod
    def from_bytes(cls, data: bytes) -> StorySnapshot:
        """Parse and verify; raises :class:`SnapshotError` saying what is wrong."""
        data = bytes(data)
        header, end = _read_header(data)
        try:
            payload = data[end:]
            if len(payload) != header["payload_bytes"]:
                raise SnapshotError(f"the snapshot is truncated or padded: its payload is {len(payload)} bytes, "
                                    f"its header says {header['payload_bytes']}")
            if hashlib.sha256(payload).hexdigest() != header["payload_sha256"]:
                raise SnapshotError("the snapshot's checksum does not match: it was altered or damaged")
            tensors = load_tensors(payload)
            captions, latents = {}, {}
            for key, tensor in tensors.items():
                kind, *index = key.split("/")
                if kind == "caption":
                    captions[int(index[0])] = tensor
                else:
                    latents[(int(index[0]), int(index[1]))] = tensor
            return cls(identity=ModelIdentity(**header["identity"]), global_caption=header["global_caption"],
                       seed=int(header["seed"]), shot_lengths=tuple(int(n) for n in header["shot_lengths"]),
                       captions=captions, history_latents=latents)
        except SnapshotError:
            raise
        except (ValueError, KeyError, TypeError) as exc:  # int(), safetensors, fields
            raise SnapshotError(f"the snapshot's contents cannot be read: {type(exc).__name__}: {exc}") from None


@dataclass(frozen=True)
class SnapshotHeader:
    """What a snapshot's first bytes say (enough to open a session for it before the rest arrives)."""

    identity: ModelIdentity
    global_caption: str
    seed: int
    shot_lengths: tuple[int, ...]
    total_bytes: int

    @classmethod
    def read(cls, prefix: bytes) -> SnapshotHeader:
        """Parse the header from the snapshot's first bytes; raises :class:`SnapshotError`."""
        header, end = _read_header(bytes(prefix))
        try:
            return cls(identity=ModelIdentity(**header["identity"]), global_caption=header["global_caption"],
                       seed=int(header["seed"]), shot_lengths=tuple(int(n) for n in header["shot_lengths"]),
                       total_bytes=end + int(header["payload_bytes"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise SnapshotError(f"the snapshot's header cannot be read: {type(exc).__name__}: {exc}") from None


def _read_header(data: bytes) -> tuple[dict, int]:
    """The JSON header and where the payload starts; raises :class:`SnapshotError`."""
    if len(data) < _PREFIX.size or data[:8] != MAGIC:
        raise SnapshotError("not a ShotStream story snapshot (it does not start with SHOTSNAP)")
    _, version, header_len = _PREFIX.unpack_from(data)
    if version != VERSION:
        raise SnapshotError(f"snapshot format version {version} is not supported; this engine reads {VERSION}")
    end = _PREFIX.size + header_len
    if end > len(data):
        raise SnapshotError(f"the snapshot is truncated: {len(data)} bytes, its header alone needs {end}")
    try:
        header = json.loads(data[_PREFIX.size:end])
    except (ValueError, UnicodeDecodeError) as exc:
        raise SnapshotError(f"the snapshot's header cannot be read: {type(exc).__name__}: {exc}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise SnapshotError("the snapshot's header is not a ShotStream story snapshot header")
    return header, end


def weights_fingerprint(*modules: torch.nn.Module | None) -> str:
    """A short hash of the modules' tensors: names, shapes, dtypes and up to 4096 strided values of each.

    Cheap at full size (no full pass over 1.4 B parameters) and different for any retrained or
    swapped checkpoint in practice; it is not a security hash of every weight."""
    digest = hashlib.sha256()
    for module in modules:
        if module is None:
            continue
        for name, tensor in module.state_dict().items():
            flat = tensor.detach().reshape(-1)
            sample = flat[:: max(1, flat.numel() // 4096)][:4096].float().cpu()
            digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
            digest.update(sample.numpy().tobytes())
    return digest.hexdigest()[:16]
