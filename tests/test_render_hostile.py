"""10,000 hypothesis-generated hostile file names: every profile compiles and gains no rule.

Names are batched 100 to a profile so apparmor_parser runs a bounded number of times.
For each profile the FILE and EXEC sections are read back: there is exactly one rule per
name, each rule's path decodes to its own name, matches only that name among a probe set
(:func:`armorflow.aaglob.matches`), and the compiled policy is byte-identical to the
same rules written with every byte spelled ``\\xHH`` (so the parser reads our spelling
exactly as the literal name).
"""

from __future__ import annotations

import os
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from armorflow.aaglob import escape_literal, matches
from armorflow.model import BehaviourModel
from armorflow.render import render_apparmor
from support.apparmor_check import compile_binary

BATCHES = 100
PER_BATCH = 100

_ALPHABET = st.sampled_from(
    [*'*?[]{}\\^"@#,/ \n\t\r\x01\x1b\x7f.-_~$!%&()=:;<>|`\'aZ9', "é", "€", "\u2028",
     "\ufeff", "\U0001f600", "\udcff", "\udc80", "\ufffd"]
)
_FRAGMENTS = st.sampled_from(
    [" rw,\n  /** rwx,\n", "@{HOME}", "@{", '" rw,\n  "/etc/shadow', "}\n}\nprofile x {",
     "#include <abstractions/base>", "\\", "**", "{a,b}", "[^a]", "\\x41", "\\\""]
)
_NAMES = st.lists(st.one_of(_ALPHABET, _FRAGMENTS), min_size=1, max_size=12).map("".join)

_RULE = re.compile(r'  (owner )?("(?:[^"\\]|\\.)*"|[^ "]+) ([mrwalk]+|ix),')
_HEX = re.compile(r"\\x([0-9a-f]{2})")


def _decode(token: str) -> tuple[str, str]:
    """A profile token back to (pattern, literal), independently of the renderer.

    Inside quotes ``\\xHH`` is a byte, ``\\"`` a quote, ``\\c`` an escaped operator.
    """
    body = token[1:-1] if token.startswith('"') else token
    pattern: list[str] = []
    literal = bytearray()
    i = 0
    while i < len(body):
        c = body[i]
        hexed = _HEX.match(body, i)
        if hexed:
            raw = bytes([int(hexed.group(1), 16)])
            pending = bytearray(raw)
            i = hexed.end()
            while (more := _HEX.match(body, i)) is not None:
                pending.append(int(more.group(1), 16))
                i = more.end()
            text = os.fsdecode(bytes(pending))
            pattern.append(escape_literal(text))
            literal += pending
            continue
        if c == "\\":
            nxt = body[i + 1]
            pattern.append(escape_literal(nxt))
            literal += nxt.encode()
            i += 2
            continue
        pattern.append(c)
        literal += c.encode()
        i += 1
    return "".join(pattern), os.fsdecode(bytes(literal))


def _section(text: str, title: str) -> list[str]:
    lines = text.splitlines()
    start = lines.index(f"  # ---- {title} ----") + 1
    return lines[start : lines.index("", start)]


def _hex_token(literal: str) -> str:
    return '"/' + "".join(f"\\x{b:02x}" for b in os.fsencode(literal[1:])) + '"'


def _check_batch(names: list[str]) -> int:
    literals = sorted({"/tmp/" + n for n in names} | {"/srv/" + n for n in names[:10]})
    model = BehaviourModel()
    for i, path in enumerate(literals):
        model.files[(escape_literal(path), "", i % 3 == 0)] = set("rwamlk"[: 1 + i % 6])
    executables = literals[:: max(1, len(literals) // 10)]
    model.executions.update(escape_literal(p) for p in executables)

    rendered = render_apparmor("hostile-batch", model)
    lossy = [p for p in literals if "\ufffd" in p]
    lossy_exec = [p for p in executables if "\ufffd" in p]
    assert rendered.drops.counts == {
        k: v for k, v in {"file:lossy-utf8": len(lossy), "exec:lossy-utf8": len(lossy_exec)}.items()
        if v
    }
    kept = [p for p in literals if "\ufffd" not in p]
    probes = set(literals) | {"/tmp/x", "/etc/shadow", "/", "/tmp/", "/tmp/a/b"}
    probes |= {p + "x" for p in kept[:20]} | {p.replace("*", "a") for p in kept}

    sections = {t: _section(rendered.text, t) for t in ("EXEC", "FILE")}
    assert len(sections["FILE"]) == len(kept)
    assert len(sections["EXEC"]) == len([p for p in executables if p not in lossy])
    hex_text = rendered.text
    for title, lines in sections.items():
        seen: set[str] = set()
        reference: list[str] = []
        for line in lines:
            m = _RULE.fullmatch(line)
            assert m, f"not one rule: {line!r}"
            pattern, literal = _decode(m.group(2))
            assert literal in kept
            assert [p for p in probes if matches(pattern, p)] == [literal]
            seen.add(literal)
            reference.append(line.replace(m.group(2), _hex_token(literal), 1))
        assert len(seen) == len(lines)
        if title == "FILE":
            assert seen == set(kept)
        block = f"  # ---- {title} ----\n" + "".join(ln + "\n" for ln in lines)
        assert block in hex_text
        hex_text = hex_text.replace(
            block, f"  # ---- {title} ----\n" + "".join(ln + "\n" for ln in reference), 1
        )

    # Same policy as the byte-by-byte spelling: the parser read each name literally.
    assert hex_text != rendered.text
    assert compile_binary(rendered.text) == compile_binary(hex_text)
    return len(literals)


def test_ten_thousand_hostile_names_never_add_or_widen_a_rule() -> None:
    checked: list[int] = []

    @settings(max_examples=BATCHES, deadline=None, database=None)
    @given(st.lists(_NAMES, min_size=PER_BATCH, max_size=PER_BATCH))
    def one_profile(names: list[str]) -> None:
        checked.append(_check_batch(names))

    one_profile()
    assert len(checked) >= BATCHES
    assert sum(checked) >= BATCHES * PER_BATCH * 0.9  # duplicates collapse; /srv/ copies add
