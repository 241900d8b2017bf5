"""Download the published weights: Wan2.1-T2V-1.3B, the ShotStream student, optionally a tiny decoder.

    python -m engine_core.fetch DEST [--no-student] [--decoder taew2_1|lighttaew2_1 [--decoder-only]]

prints the paths to give the engine, one ``name: path`` line each: ``weights`` (the Wan folder),
``student`` (the ``shotstream_merged.pt`` file) and, with ``--decoder``, ``tae`` (the tiny decoder
file, for ``ShotStreamEngine.load(..., tae=<path>)``). Only the files the engine reads are
downloaded (about 17 GB for Wan, 5.7 GB for the student, 20-50 MB for a tiny decoder).

Tiny decoders (``--decoder``), saved into ``DEST/tae/``:

* ``taew2_1``: ``taew2_1.pth`` from ``madebyollin/taehv`` (MIT), decodes the DiT's latents as they are;
* ``lighttaew2_1``: ``lighttaew2_1.safetensors`` from ``lightx2v/Autoencoders`` (Apache-2.0), LightX2V's
  distilled one, trained on raw Wan latents (the engine denormalises for it; see :mod:`.tae`).

``--decoder-only`` fetches just the tiny decoder (e.g. when the Wan weights are already there).

Needs ``huggingface_hub`` (``pip install 'shotstream-bridge[fetch]'``) and network access to the
Hugging Face Hub; nothing else in the engine touches the network.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from .checkpoints import STUDENT_FILE, WAN_DIT_STEM, WAN_T5_FILE, WAN_TOKENIZER_DIR, WAN_VAE_FILE

WAN_REPO = "Wan-AI/Wan2.1-T2V-1.3B"
STUDENT_REPO = "KlingTeam/ShotStream"
WAN_PATTERNS = ["config.json", f"{WAN_DIT_STEM}*.safetensors", f"{WAN_DIT_STEM}.safetensors.index.json",
                WAN_T5_FILE, WAN_VAE_FILE, f"{WAN_TOKENIZER_DIR}/*"]


@dataclass(frozen=True)
class TaeSource:
    """Where a published tiny decoder lives on the Hub, and under which license."""

    repo: str
    filename: str
    license: str


# The engine's tae kinds (engine_core.engine.TAE_KINDS) -> their published files.
TAE_SOURCES = {
    "taew2_1": TaeSource("madebyollin/taehv", "taew2_1.pth", "MIT"),
    "lighttaew2_1": TaeSource("lightx2v/Autoencoders", "lighttaew2_1.safetensors", "Apache-2.0"),
}
TAE_DIR = "tae"


class FetchError(RuntimeError):
    """The weights could not be downloaded (no huggingface_hub, no network, missing files)."""


def _download(repo: str, dest: Path, patterns: list[str]) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:
        raise FetchError("huggingface_hub is not installed; install it with `pip install huggingface_hub` "
                         "(or the 'fetch' extra of this package), or download the files by hand.") from exc
    try:
        return Path(snapshot_download(repo_id=repo, local_dir=dest, allow_patterns=patterns))
    except Exception as exc:  # network, auth, disk: hub errors do not share one base class across versions
        raise FetchError(f"downloading {repo} into {dest} failed: {type(exc).__name__}: {exc}. Check the network "
                         "connection to huggingface.co (or HF_ENDPOINT), free disk space, and HF_TOKEN if the repo "
                         "needs one; re-running resumes the download.") from exc


def _download_file(repo: str, filename: str, dest: Path) -> Path:
    """One file of ``repo`` into ``dest`` (same errors as :func:`_download`); returns its local path."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as exc:
        raise FetchError("huggingface_hub is not installed; install it with `pip install huggingface_hub` "
                         "(or the 'fetch' extra of this package), or download the file by hand.") from exc
    try:
        path = Path(hf_hub_download(repo_id=repo, filename=filename, local_dir=dest))
    except Exception as exc:  # network, auth, disk, missing file: no common base class across hub versions
        raise FetchError(f"downloading {filename} from {repo} into {dest} failed: {type(exc).__name__}: {exc}. "
                         "Check the network connection to huggingface.co (or HF_ENDPOINT), free disk space, and "
                         "HF_TOKEN if the repo needs one; re-running resumes the download.") from exc
    if not path.is_file():
        raise FetchError(f"{repo}: {filename} was reported downloaded to {path}, but no such file is there.")
    return path


def fetch_tae(dest: Path, kind: str) -> Path:
    """Download the published tiny decoder ``kind`` (a key of :data:`TAE_SOURCES`) into ``dest/tae/``."""
    if kind not in TAE_SOURCES:
        raise FetchError(f"unknown tiny decoder {kind!r}; choose one of {sorted(TAE_SOURCES)}")
    source = TAE_SOURCES[kind]
    return _download_file(source.repo, source.filename, Path(dest) / TAE_DIR)


def fetch_weights(dest: Path, include_student: bool = True, decoder: str | None = None,
                  include_wan: bool = True) -> dict[str, Path]:
    """Download into ``dest``; returns ``{'weights': <Wan folder>, 'student': <shotstream_merged.pt>}``,
    plus ``'tae': <file>`` with ``decoder``. ``include_wan=False`` fetches only the tiny decoder."""
    dest = Path(dest)
    if not include_wan:
        if decoder is None:
            raise FetchError("nothing to fetch: without the Wan weights, name a tiny decoder (--decoder)")
        return {"tae": fetch_tae(dest, decoder)}
    wan_dir = _download(WAN_REPO, dest / "Wan2.1-T2V-1.3B", WAN_PATTERNS)
    needed = [WAN_VAE_FILE, WAN_T5_FILE, WAN_TOKENIZER_DIR]
    absent = [n for n in needed if not (wan_dir / n).exists()]
    if not any((wan_dir / f"{WAN_DIT_STEM}{s}").is_file() for s in (".safetensors", ".safetensors.index.json")):
        absent.append(f"{WAN_DIT_STEM}.safetensors")
    if absent:
        raise FetchError(f"{WAN_REPO} was downloaded to {wan_dir} but lacks {absent}; the repo layout may have changed.")
    paths = {"weights": wan_dir}
    if include_student:
        student_dir = _download(STUDENT_REPO, dest / "ShotStream", [STUDENT_FILE])
        student = student_dir / STUDENT_FILE
        if not student.is_file():
            raise FetchError(f"{STUDENT_REPO} has no {STUDENT_FILE} (looked in {student_dir}).")
        paths["student"] = student
    if decoder is not None:
        paths["tae"] = fetch_tae(dest, decoder)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine_core.fetch", description=__doc__.splitlines()[0])
    parser.add_argument("dest", type=Path, help="folder to download into")
    parser.add_argument("--no-student", action="store_true", help="only the Wan2.1 base weights")
    parser.add_argument("--decoder", choices=sorted(TAE_SOURCES),
                        help="also the tiny preview decoder: taew2_1 (madebyollin/taehv, MIT) or lighttaew2_1 "
                             "(lightx2v/Autoencoders, Apache-2.0), into DEST/tae/")
    parser.add_argument("--decoder-only", action="store_true",
                        help="only the tiny decoder named by --decoder (no Wan weights, no student)")
    args = parser.parse_args(argv)
    if args.decoder_only and args.decoder is None:
        parser.error("--decoder-only needs --decoder taew2_1 or --decoder lighttaew2_1")
    try:
        paths = fetch_weights(args.dest, include_student=not args.no_student, decoder=args.decoder,
                              include_wan=not args.decoder_only)
    except FetchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for name, path in paths.items():
        print(f"{name}: {path.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
