"""Story files: the reference's multi-shot JSON and our own simple format, in JSON or YAML.

Reference format (``examples/stories/01.json``)::

    {"global_caption": "...", "shot1": "...", "shot2": "...", ...}

Our format adds a seed and per-shot lengths::

    {"global_caption": "...", "seed": 7,
     "shots": [{"prompt": "...", "chunks": 7}, "a plain string is a full-length shot", ...]}

The same structure may be written as YAML (``.yaml`` / ``.yml``)::

    global_caption: A rainy neon city at night.
    seed: 7
    shots:
      - The detective steps out of a taxi.
      - {prompt: The boss enters., chunks: 2}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml


class StoryFileError(ValueError):
    pass


@dataclass(frozen=True)
class ShotSpec:
    prompt: str
    chunks: int | None = None  # None: full length (7 chunks = 81 frames)


@dataclass(frozen=True)
class StorySpec:
    global_caption: str
    shots: tuple[ShotSpec, ...]
    seed: int | None = None


def load_story(path: str | Path) -> StorySpec:
    path = Path(path)
    is_yaml = path.suffix.lower() in (".yaml", ".yml")
    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text) if is_yaml else json.loads(text)
    except FileNotFoundError:
        raise StoryFileError(f"{path}: no such story file") from None
    except (UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError) as exc:
        raise StoryFileError(f"{path}: not valid UTF-8 {'YAML' if is_yaml else 'JSON'} ({exc})") from None
    try:
        return parse_story(data)
    except StoryFileError as exc:
        raise StoryFileError(f"{path}: {exc}") from None


def parse_story(data: object) -> StorySpec:
    if not isinstance(data, dict):
        raise StoryFileError("a story is a JSON object with 'global_caption' and shots")
    caption = data.get("global_caption")
    if not isinstance(caption, str):
        raise StoryFileError("'global_caption' must be a string")
    seed = data.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise StoryFileError("'seed' must be an integer")
    if "shots" in data:
        shots = tuple(_parse_shot(i, s) for i, s in enumerate(_as_list(data["shots"])))
    else:
        shots = tuple(ShotSpec(_reference_shot(data, i)) for i in range(1, _count_reference_shots(data) + 1))
    if not shots:
        raise StoryFileError("the story has no shots ('shots': [...] or 'shot1', 'shot2', ...)")
    return StorySpec(caption, shots, seed)


def _as_list(value: object) -> list:
    if not isinstance(value, list):
        raise StoryFileError("'shots' must be a list")
    return value


def _parse_shot(i: int, raw: object) -> ShotSpec:
    if isinstance(raw, str):
        return ShotSpec(raw)
    if not isinstance(raw, dict) or not isinstance(raw.get("prompt"), str):
        raise StoryFileError(f"shot {i}: expected a string or an object with a 'prompt' string")
    chunks = raw.get("chunks")
    if chunks is not None and (isinstance(chunks, bool) or not isinstance(chunks, int)):
        raise StoryFileError(f"shot {i}: 'chunks' must be an integer")
    return ShotSpec(raw["prompt"], chunks)


def _count_reference_shots(data: dict) -> int:
    numbers = sorted(int(k[4:]) for k in data if k.startswith("shot") and k[4:].isdigit())
    if numbers != list(range(1, len(numbers) + 1)):
        raise StoryFileError(f"reference-style shots must be numbered shot1..shotN without gaps, got {numbers}")
    return len(numbers)


def _reference_shot(data: dict, i: int) -> str:
    value = data[f"shot{i}"]
    if not isinstance(value, str):
        raise StoryFileError(f"'shot{i}' must be a string")
    return value
