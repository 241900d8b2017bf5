"""Download the published weights: Wan2.1-T2V-1.3B (original layout) and the ShotStream student.

    python -m engine_core.fetch DEST [--no-student]

prints the two paths to give the engine as ``weights`` (the Wan folder) and ``student`` (the
``shotstream_merged.pt`` file). Only the files the engine reads are downloaded (about 17 GB for
Wan, 5.7 GB for the student). Needs ``huggingface_hub`` (``pip install 'shotstream-bridge[fetch]'``)
and network access to the Hugging Face Hub; nothing else in the engine touches the network.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .checkpoints import STUDENT_FILE, WAN_DIT_STEM, WAN_T5_FILE, WAN_TOKENIZER_DIR, WAN_VAE_FILE

WAN_REPO = "Wan-AI/Wan2.1-T2V-1.3B"
STUDENT_REPO = "KlingTeam/ShotStream"
WAN_PATTERNS = ["config.json", f"{WAN_DIT_STEM}*.safetensors", f"{WAN_DIT_STEM}.safetensors.index.json",
                WAN_T5_FILE, WAN_VAE_FILE, f"{WAN_TOKENIZER_DIR}/*"]


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


def fetch_weights(dest: Path, include_student: bool = True) -> dict[str, Path]:
    """Download into ``dest``; returns ``{'weights': <Wan folder>, 'student': <shotstream_merged.pt>}``."""
    dest = Path(dest)
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
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine_core.fetch", description=__doc__.splitlines()[0])
    parser.add_argument("dest", type=Path, help="folder to download into")
    parser.add_argument("--no-student", action="store_true", help="only the Wan2.1 base weights")
    args = parser.parse_args(argv)
    try:
        paths = fetch_weights(args.dest, include_student=not args.no_student)
    except FetchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for name, path in paths.items():
        print(f"{name}: {path.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
