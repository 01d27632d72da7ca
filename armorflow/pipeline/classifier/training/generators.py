"""Random file names the way real software makes them, with the random span marked.

Each generator returns ``(segment, spans)``. Where the generator can be seeded, the real
implementation is driven with our seeded RNG (Python's tempfile alphabet, ``uuid``,
``hashlib``); where it cannot (coreutils ``mktemp``, Go's ``os.MkdirTemp``), the
documented alphabet and length are drawn from the seeded RNG so that training stays
reproducible. ``real_mktemp`` calls the actual binary (used for evaluation only).
"""

from __future__ import annotations

import base64
import hashlib
import random
import string
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

Labelled = tuple[str, list[tuple[int, int]]]
Generator = Callable[[random.Random, Sequence[str]], Labelled]

ALNUM = string.ascii_letters + string.digits
#: CPython's tempfile name alphabet (8 characters per name), read from the module itself.
PY_TEMP_CHARS: str = vars(tempfile)["_RandomNameSequence"].characters
#: k8s.io/apimachinery/pkg/util/rand alphabet (no vowels, no confusable characters).
K8S_RAND_CHARS = "bcdfghjklmnpqrstvwxz2456789"
EXTENSIONS = ("txt", "json", "log", "tmp", "yaml", "sock", "pid", "lock", "conf", "db", "gz")


def _pick(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _glue(prefix: str, rand: str, suffix: str = "") -> Labelled:
    return prefix + rand + suffix, [(len(prefix), len(prefix) + len(rand))]


def _prefix(rng: random.Random, words: Sequence[str]) -> str:
    """A program-chosen name prefix: one to three real words joined by ``-``."""
    k = rng.choice((1, 1, 2, 3))
    return "-".join(rng.choice(words) for _ in range(k))


def mktemp_default(rng: random.Random, words: Sequence[str]) -> Labelled:
    return _glue("tmp.", _pick(rng, ALNUM, 10))


def mktemp_long(rng: random.Random, words: Sequence[str]) -> Labelled:
    # mktemp accepts any number of X; long templates make long mixed-case tokens.
    prefix = _prefix(rng, words) + "." if rng.random() < 0.3 else ""
    return _glue(prefix, _pick(rng, ALNUM, rng.randint(13, 64)))


def token_urlsafe(rng: random.Random, words: Sequence[str]) -> Labelled:
    # secrets.token_urlsafe(n): base64url of n random bytes (cache keys, upload ids).
    while True:
        tok = base64.urlsafe_b64encode(rng.randbytes(rng.choice((12, 16, 24, 32, 48)))).decode()
        tok = tok.rstrip("=")
        if tok[0].isalnum() and tok[-1].isalnum():
            break
    return tok, [(0, len(tok))]


def mktemp_template(rng: random.Random, words: Sequence[str]) -> Labelled:
    sep = rng.choice((".", "-", "_", ""))
    suffix = "." + rng.choice(EXTENSIONS) if rng.random() < 0.3 else ""
    return _glue(_prefix(rng, words) + sep, _pick(rng, ALNUM, rng.randint(6, 12)), suffix)


def python_tempfile(rng: random.Random, words: Sequence[str]) -> Labelled:
    prefix = "tmp" if rng.random() < 0.6 else _prefix(rng, words) + rng.choice(("-", "_", ""))
    suffix = "." + rng.choice(EXTENSIONS) if rng.random() < 0.3 else ""
    return _glue(prefix, _pick(rng, PY_TEMP_CHARS, 8), suffix)


def php_upload(rng: random.Random, words: Sequence[str]) -> Labelled:
    # PHP's upload_tmp_dir files come from mkstemp("phpXXXXXX").
    return _glue("php", _pick(rng, ALNUM, 6))


def php_session(rng: random.Random, words: Sequence[str]) -> Labelled:
    # session.sid_bits_per_character=5, sid_length=26.
    return _glue("sess_", _pick(rng, string.digits + "abcdefghijklmnopqrstuv", 26))


def go_mkdirtemp(rng: random.Random, words: Sequence[str]) -> Labelled:
    # Go: prefix + strconv.Itoa(int(rand.Uint32())) [+ suffix when the pattern has '*'].
    rand = str(rng.getrandbits(32))
    if rng.random() < 0.25:
        return _glue(_prefix(rng, words) + "-", rand, "." + rng.choice(EXTENSIONS))
    return _glue(_prefix(rng, words) + rng.choice(("-", "_", "")), rand)


def webpack_asset(rng: random.Random, words: Sequence[str]) -> Labelled:
    digest = hashlib.md5(rng.randbytes(16)).hexdigest()[: rng.choice((8, 8, 20))]
    name = rng.choice(("main", "runtime", "vendors", str(rng.randint(0, 999)), rng.choice(words)))
    ext = rng.choice((".chunk.js", ".js", ".css", ".chunk.css", ".js.map"))
    return _glue(name + ".", digest, ext)


def k8s_pod_name(rng: random.Random, words: Sequence[str]) -> Labelled:
    # Deployment pods: <name>-<pod-template-hash>-<5 random>; both parts vary per rollout.
    name = _prefix(rng, words) + "-"
    rand = _pick(rng, K8S_RAND_CHARS, rng.choice((9, 10))) + "-" + _pick(rng, K8S_RAND_CHARS, 5)
    return _glue(name, rand)


def uuid4_name(rng: random.Random, words: Sequence[str]) -> Labelled:
    u = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    return (u, [(0, len(u))]) if rng.random() < 0.7 else _glue("pvc-", u)


def sha256_name(rng: random.Random, words: Sequence[str]) -> Labelled:
    d = hashlib.sha256(rng.randbytes(32)).hexdigest()
    return d, [(0, len(d))]


def short_container_id(rng: random.Random, words: Sequence[str]) -> Labelled:
    d = hashlib.sha256(rng.randbytes(32)).hexdigest()[:12]
    return d, [(0, 12)]


def k8s_atomic_writer_dir(rng: random.Random, words: Sequence[str]) -> Labelled:
    t = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randint(0, 10**8))
    return _glue("..", t.strftime("%Y_%m_%d_%H_%M_%S.") + str(rng.getrandbits(32)))


#: Generators the span model learns from (uuid/hex/kubelet dirs are settled by rules).
MODEL_GENERATORS: dict[str, Generator] = {
    "mktemp": mktemp_default,
    "mktemp-template": mktemp_template,
    "mktemp-long": mktemp_long,
    "token-urlsafe": token_urlsafe,
    "python-tempfile": python_tempfile,
    "php-upload": php_upload,
    "php-session": php_session,
    "go-mkdirtemp": go_mkdirtemp,
    "webpack": webpack_asset,
    "k8s-pod-name": k8s_pod_name,
    "short-container-id": short_container_id,
}
#: Everything, for evaluation.
ALL_GENERATORS: dict[str, Generator] = {
    **MODEL_GENERATORS,
    "uuid4": uuid4_name,
    "sha256": sha256_name,
    "k8s-atomic-writer": k8s_atomic_writer_dir,
}


def real_mktemp(n: int, template: str = "tmp.XXXXXXXXXX") -> list[Labelled]:
    """``n`` names from the coreutils binary itself (``mktemp -u``: nothing is created)."""
    script = f'for _ in $(seq {n}); do mktemp -u -t "{template}"; done'
    out = subprocess.run(["bash", "-c", script], check=True, capture_output=True, text=True)
    start = template.index("X")
    end = start + template.count("X")
    return [
        (name, [(start, end)]) for name in (line.rsplit("/", 1)[-1] for line in out.stdout.split())
    ]
