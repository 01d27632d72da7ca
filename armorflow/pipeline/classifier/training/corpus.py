"""Stable paths from the Debian package file lists on this machine, split by directory.

Directories, not single paths, are split between the lexicon, the model fit and the
evaluation, so the evaluation always meets file names the model never saw.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

DPKG_INFO = Path("/var/lib/dpkg/info")

Split = Literal["lexicon", "fit", "eval"]

#: Whole alphabetic words (not fragments cut out of longer runs), as programs use them.
_ALPHA_WORD = re.compile(r"(?<![A-Za-z])[A-Za-z]{3,16}(?![A-Za-z])")


def split_of(package: str, path: str) -> Split:
    """Stable assignment of a path by (package, parent directory): 20% eval, 30% fit,
    50% lexicon. Whole directories go one way, so evaluated file names were never seen
    in training, while big packages (google-cloud-cli is a third of a typical node's
    files) still feed both sides.
    """
    key = package + "\0" + path.rsplit("/", 1)[0]
    bucket = hashlib.sha1(key.encode()).digest()[0] % 10
    if bucket < 2:
        return "eval"
    return "fit" if bucket < 5 else "lexicon"


def package_paths(info_dir: Path = DPKG_INFO) -> dict[str, list[str]]:
    """Package name -> the absolute paths its ``.list`` file names (sorted packages)."""
    out: dict[str, list[str]] = {}
    for lst in sorted(info_dir.glob("*.list")):
        name = lst.stem.split(":", 1)[0]
        lines = lst.read_text(errors="replace").splitlines()
        out.setdefault(name, []).extend(p for p in lines if p.startswith("/") and p != "/.")
    return out


def paths_of(split: Split | Iterable[Split], info_dir: Path = DPKG_INFO) -> list[str]:
    wanted = {split} if isinstance(split, str) else set(split)
    seen: set[str] = set()
    for pkg, paths in package_paths(info_dir).items():
        seen.update(p for p in paths if split_of(pkg, p) in wanted)
    return sorted(seen)


def segments_of(paths: Iterable[str]) -> list[str]:
    return sorted({s for p in paths for s in p.split("/") if s})


def prefix_words(segments: Iterable[str]) -> list[str]:
    """Words programs use as name prefixes: alphabetic runs from real file names."""
    words = {m.group(0).lower() for s in segments for m in _ALPHA_WORD.finditer(s)}
    return sorted(words)


def is_content_addressed(path: str) -> bool:
    """Package files whose names are digests (build-ids, cursor hashes): collapsed by design."""
    return re.search(r"(?<![0-9A-Za-z])(?=[0-9a-fA-F]*[0-9])[0-9a-fA-F]{16,}", path) is not None
