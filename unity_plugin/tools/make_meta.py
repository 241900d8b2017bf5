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

A GUID is the MD5 of ``com.shotstream.bridge/<path in the package>``: stable across checkouts and
releases, unique to the path (a renamed asset gets a new GUID, as a new asset would).

    python unity_plugin/tools/make_meta.py           # write missing or outdated .meta files, delete orphans
    python unity_plugin/tools/make_meta.py --check   # list differences, exit 1 if any (nothing written)
"""

from __future__ import annotations

import hashlib
import sys
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


def guid(rel: Path) -> str:
    return hashlib.md5(f"{NAME}/{rel.as_posix()}".encode("utf-8")).hexdigest()


def importer(rel: Path, is_dir: bool) -> str:
    key = "folder" if is_dir else rel.name if rel.name in IMPORTERS else rel.suffix
    if key not in IMPORTERS:
        raise ValueError(f"{rel}: no importer known for {key or 'files without an extension'}; add one to IMPORTERS")
    return IMPORTERS[key]


def meta_text(rel: Path, is_dir: bool) -> str:
    return f"fileFormatVersion: 2\nguid: {guid(rel)}\n" + importer(rel, is_dir)


def expected(package: Path = PACKAGE) -> dict[Path, str]:
    """``<asset>.meta`` (package-relative) -> its content, for every imported asset."""
    return {rel.with_name(rel.name + ".meta"): meta_text(rel, (package / rel).is_dir()) for rel in assets(package)}


def orphans(package: Path = PACKAGE) -> list[Path]:
    """.meta files (outside hidden folders) whose asset is gone or needs no .meta (e.g. one left in
    ``Documentation~`` or next to a sample folder)."""
    metas = (p.relative_to(package) for p in package.rglob("*.meta"))
    return sorted(m for m in metas if not any(part.startswith(".") for part in m.parts)
                  and not (imported(m.with_suffix("")) and (package / m.with_suffix("")).exists()))


def main(argv: list[str]) -> int:
    check = argv == ["--check"]
    if argv and not check:
        print(__doc__, file=sys.stderr)
        return 2
    problems = []
    for rel, text in expected().items():
        path = PACKAGE / rel
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            continue
        problems.append(f"{'missing' if not path.exists() else 'outdated'}: {rel}")
        if not check:
            path.write_text(text, encoding="utf-8", newline="\n")
    for rel in orphans():
        problems.append(f"orphan: {rel}")
        if not check:
            (PACKAGE / rel).unlink()
    for line in problems:
        print(line)
    if check:
        return 1 if problems else 0
    print(f"{len(expected())} .meta files up to date" + (f" ({len(problems)} changed)" if problems else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
