"""Build ``nsprobe`` (``nsprobe.c`` beside this file): a static program that asks for
namespaces through unshare, clone, clone3 and setns, and mounts, printing what each
request got. Static, so that it runs in the busybox test image as well as on the host."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Final

SOURCE: Final = Path(__file__).with_name("nsprobe.c")


class ProbeBuildError(RuntimeError):
    """gcc is missing or cannot link statically."""


def build_nsprobe(out_dir: Path | None = None) -> Path:
    """The compiled probe (rebuilt only when the source changed)."""
    gcc = shutil.which("gcc")
    if gcc is None:
        raise ProbeBuildError("gcc is not installed")
    source = SOURCE.read_bytes()
    directory = out_dir or Path(tempfile.gettempdir()) / "armorflow-nsprobe"
    directory.mkdir(parents=True, exist_ok=True)
    binary = directory / f"nsprobe-{hashlib.sha256(source).hexdigest()[:12]}"
    if not binary.exists():
        partial = binary.with_suffix(".partial")
        built = subprocess.run([gcc, "-static", "-O2", "-Wall", "-o", str(partial), str(SOURCE),
                                "-lpthread"], capture_output=True, text=True, check=False)
        if built.returncode != 0:
            raise ProbeBuildError(f"gcc -static failed: {built.stderr[-2000:]}")
        partial.replace(binary)
    return binary
