"""Writes the Unity ``.meta`` file of every asset the package ships, and deletes orphaned ones.

Unity ignores an asset without a ``.meta`` in an immutable package (installed from a git URL), so every
file and folder of ``com.shotstream.bridge`` needs one, except what Unity never imports: the package root,
hidden entries and anything in or named like a ``~`` folder (``Documentation~``, ``Samples~``).

One exception inside ``Samples~``: Unity does not import a sample where it lies, but *Import* in the Package
Manager copies the sample's folder content, ``.meta`` files included, to
``Assets/Samples/<package>/<version>/<sample>``. So every file and sub-folder inside a sample
(``Samples~/<sample>/...``) gets a ``.meta`` too: that keeps the sample scene's references to the sample's
script (``m_Script`` GUID) valid after the copy. ``Samples~`` and ``Samples~/<sample>`` themselves get none:
the copy lands in a folder Unity creates (named after the sample's ``displayName``) and gives its own GUID,
so a ``.meta`` next to the sample folder would never be read.

GUIDs are stored once, in the committed ``.meta`` files, and kept: this tool never changes the GUID of an existing
``.meta`` (it only rewrites an outdated importer block around it). A new asset gets a random GUID, as Unity gives
one, except when it is a moved file whose ``.meta`` was left behind: an orphaned ``.meta`` of the same file name
(and the only one) moves with it, GUID and all, so references to it in users' scenes survive the move. Move
``.meta`` files with their assets (``git mv`` both) and this never has to guess. Orphaned ``.meta`` files left after
that are deleted (their asset is gone).

    python unity_plugin/tools/make_meta.py           # write missing .meta files, fix importers, move or delete orphans
    python unity_plugin/tools/make_meta.py --check   # list differences, exit 1 if any (nothing written)
    python unity_plugin/tools/make_meta.py --package DIR [--check]   # another copy of the package (tests)
"""

from __future__ import annotations

import re
import sys
import uuid
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "com.shotstream.bridge"
NAME = "com.shotstream.bridge"

# Importer blocks as Unity 2021.3 writes them (the trailing spaces are Unity's).
_TAIL = "  userData: \n  assetBundleName: \n  assetBundleVariant: \n"
IMPORTERS = {
    "folder": "folderAsset: yes\nDefaultImporter:\n  externalObjects: {}\n" + _TAIL,
    ".cs": ("MonoImporter:\n  externalObjects: {}\n  serializedVersion: 2\n  defaultReferences: []\n  executionOrder: 0\n"
            "  icon: {instanceID: 0}\n" + _TAIL),
    ".asmdef": "AssemblyDefinitionImporter:\n  externalObjects: {}\n" + _TAIL,
    "package.json": "PackageManifestImporter:\n  externalObjects: {}\n" + _TAIL,
    ".json": "TextScriptImporter:\n  externalObjects: {}\n" + _TAIL,
    ".md": "TextScriptImporter:\n  externalObjects: {}\n" + _TAIL,
    ".unity": "DefaultImporter:\n  externalObjects: {}\n" + _TAIL,
    # a ScriptableObject asset: its one object is the main object, fileID 11400000 (class 114 x 100000)
    ".asset": "NativeFormatImporter:\n  externalObjects: {}\n  mainObjectFileID: 11400000\n" + _TAIL,
}

SAMPLES = "Samples~"


def imported(rel: Path) -> bool:
    """Whether Unity imports this package-relative path, in the package or as part of an imported sample
    (``Samples~/<sample>/...``), and so needs its .meta."""
    parts = rel.parts
    if not parts or rel.suffix == ".meta" or any(part.startswith(".") for part in parts):
        return False
    if parts[0] == SAMPLES:  # inside a sample: copied into Assets/ with its .meta files
        return len(parts) >= 3 and not any(part.endswith("~") for part in parts[1:])
    return not any(part.endswith("~") for part in parts)


def assets(package: Path = PACKAGE) -> list[Path]:
    """Package-relative paths of every file and folder Unity imports, sorted."""
    return sorted(p.relative_to(package) for p in package.rglob("*") if imported(p.relative_to(package)))


GUID_LINE = re.compile(r"^guid: ([0-9a-f]{32})$", re.M)


def stored_guid(meta: Path) -> str | None:
    """The GUID a .meta file holds, or None when it has no valid one."""
    try:
        m = GUID_LINE.search(meta.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return None
    return m[1] if m else None


def new_guid() -> str:
    return uuid.uuid4().hex

def importer(rel: Path, is_dir: bool) -> str:
    key = "folder" if is_dir else rel.name if rel.name in IMPORTERS else rel.suffix
    if key not in IMPORTERS:
        raise ValueError(f"{rel}: no importer known for {key or 'files without an extension'}; add one to IMPORTERS")
    return IMPORTERS[key]


def meta_text(guid: str, rel: Path, is_dir: bool) -> str:
    return f"fileFormatVersion: 2\nguid: {guid}\n" + importer(rel, is_dir)


def orphans(package: Path = PACKAGE) -> list[Path]:
    """.meta files (outside hidden folders) whose asset is gone or needs no .meta (e.g. one left in
    ``Documentation~`` or next to a sample folder)."""
    metas = (p.relative_to(package) for p in package.rglob("*.meta"))
    return sorted(m for m in metas if not any(part.startswith(".") for part in m.parts)
                  and not (imported(m.with_suffix("")) and (package / m.with_suffix("")).exists()))


def plan(package: Path = PACKAGE) -> tuple[dict[Path, str], list[str], list[Path]]:
    """What the package needs: ``<asset>.meta`` (package-relative) -> content for the .meta files to write, the
    changes as text lines, and the orphans to delete. Existing GUIDs are kept; a moved asset takes its left-behind
    .meta's GUID; new assets get new ones."""
    left = orphans(package)
    by_name: dict[str, list[Path]] = {}
    for o in left:
        by_name.setdefault(o.name, []).append(o)
    used = {g for g in (stored_guid(m) for m in package.rglob("*.meta")) if g}
    writes: dict[Path, str] = {}
    lines: list[str] = []
    for rel in assets(package):
        meta = rel.with_name(rel.name + ".meta")
        is_dir = (package / rel).is_dir()
        guid = stored_guid(package / meta) if (package / meta).is_file() else None
        if guid is None:
            candidates = by_name.get(meta.name, [])
            if len(candidates) == 1 and stored_guid(package / candidates[0]):
                moved = candidates.pop()
                left.remove(moved)
                guid = stored_guid(package / moved)
                lines.append(f"moved: {moved} -> {meta} (GUID {guid} kept)")
            else:
                guid = new_guid()
                while guid in used:
                    guid = new_guid()
                lines.append(f"missing: {meta} (new GUID {guid})")
            used.add(guid)
        text = meta_text(guid, rel, is_dir)
        path = package / meta
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            continue
        if path.is_file():
            lines.append(f"outdated: {meta} (GUID {guid} kept)")
        writes[meta] = text
    lines += [f"orphan: {o}" for o in left]
    return writes, lines, left


def main(argv: list[str]) -> int:
    args = list(argv)
    package = PACKAGE
    if len(args) >= 2 and args[0] == "--package":
        package = Path(args[1]).resolve()
        args = args[2:]
    check = args == ["--check"]
    if args and not check:
        print(__doc__, file=sys.stderr)
        return 2
    writes, lines, left = plan(package)
    for line in lines:
        print(line)
    if check:
        return 1 if lines else 0
    for rel, text in writes.items():
        (package / rel).write_text(text, encoding="utf-8", newline="\n")
    for rel in left:
        (package / rel).unlink()
    for line in lines:
        if line.startswith("moved: "):
            (package / line.split(" ")[1]).unlink()
    print(f"{len(assets(package))} .meta files up to date" + (f" ({len(lines)} changed)" if lines else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
