"""The wrapper process of :func:`support.seccomp_apply.apply_seccomp_and_exec`.

``python tests/support/seccomp_exec.py PROFILE.json -- CMD [ARGS...]`` installs the
profile's filter on itself and then execs the command, so the command's ``execve`` and
all that follows run under the filter. A module of its own so that running it does not
re-import a module the package has already imported.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

# Run as a script: its own folder is on sys.path, the tests folder (``support``'s parent)
# is not.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from support.seccomp_apply import load_profile


def main(args: Sequence[str] | None = None) -> NoReturn:
    argv = list(sys.argv[1:] if args is None else args)
    if len(argv) < 3 or argv[1] != "--":
        print("usage: seccomp_exec.py PROFILE.json -- CMD [ARGS...]",
              file=sys.stderr)
        raise SystemExit(2)
    profile = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    command = argv[2:]
    load_profile(profile)
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        # Only write(2) and exit_group(2) are needed to report this under the filter.
        os.write(2, f"seccomp_exec: exec {command[0]!r} failed: {exc}\n".encode())
        os._exit(126)


if __name__ == "__main__":
    main()
