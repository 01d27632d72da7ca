"""AppArmor globs: escaping, matching as apparmor_parser compiles, and writing profile tokens.

Semantics are checked against the real parser: a pattern and an independent spelling of
the same rule (every byte as ``\\xHH``) must compile to identical binary policy, and the
parser must refuse exactly the malformed patterns this module refuses.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from armorflow.aaglob import (
    GlobError,
    escape_literal,
    glob_to_regex,
    has_wildcard,
    matches,
    parse,
    to_profile_path,
    unescape_literal,
    validate,
)
from support.apparmor_check import AppArmorCompileError, compile_binary, compile_check, parser_path

HOSTILE = '*?[]{}\\^"@#,/ \n\t\r\x01\x7fab.é€' + "\udcff\udc80"


def _profile(*tokens: str) -> str:
    body = "".join(f"  {t} r,\n" for t in tokens)
    return f"abi <abi/3.0>,\nprofile t {{\n{body}}}\n"


def _hex_token(literal: str) -> str:
    """The rule path written byte by byte as ``\\xHH``: a spelling independent of ours.

    The leading ``/`` stays plain: the parser only reads a quoted token as a path when
    it starts with one.
    """
    assert literal.startswith("/")
    return '"/' + "".join(f"\\x{b:02x}" for b in os.fsencode(literal[1:])) + '"'


# --- escaping ---------------------------------------------------------------------------


@given(st.text(alphabet=HOSTILE, min_size=1, max_size=30))
def test_escaped_literal_matches_itself_only(name: str) -> None:
    path = "/d/" + name
    pattern = escape_literal(path)
    assert not has_wildcard(pattern)
    assert unescape_literal(pattern) == path
    assert matches(pattern, path)
    for other in (path + "x", path[:-1], "/d/x", "/d/" + name.replace("*", "a")):
        if other != path:
            assert not matches(pattern, other)


def test_escaping_is_per_character_so_pieces_compose() -> None:
    pieces = ["/tmp/", "php[1]*", "{x,y}", "@{HOME}"]
    assert "".join(escape_literal(p) for p in pieces) == escape_literal("".join(pieces))


def test_literal_star_does_not_widen() -> None:
    pattern = escape_literal("/tmp/*")
    assert matches(pattern, "/tmp/*")
    assert not matches(pattern, "/tmp/a")
    assert not matches(escape_literal("/tmp/a?b"), "/tmp/axb")
    assert not matches(escape_literal("/tmp/[ab]"), "/tmp/a")


# --- operators as the parser compiles them ---------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "yes", "no"),
    [
        ("/tmp/*", ["/tmp/a", "/tmp/abc"], ["/tmp/", "/tmp/a/b"]),
        ("/tmp/*a", ["/tmp/a", "/tmp/xa"], ["/tmp/x/a"]),
        ("/tmp/a*", ["/tmp/a", "/tmp/ab"], ["/tmp/a/b"]),
        ("/tmp/**", ["/tmp/a", "/tmp/a/b/c"], ["/tmp/", "/tmp//x"]),
        ("/tmp/a**", ["/tmp/a", "/tmp/a/b"], ["/tmp/b"]),
        ("/tmp/*/x", ["/tmp/a/x"], ["/tmp//x"]),
        ("/tmp/*\\/x", ["/tmp/a/x"], ["/tmp//x"]),
        ("/tmp/?", ["/tmp/a"], ["/tmp/", "/tmp/ab", "/tmp//"]),
        ("/tmp/{a,b}", ["/tmp/a", "/tmp/b"], ["/tmp/c", "/tmp/{a,b}"]),
        ("/tmp/{a,}x", ["/tmp/ax", "/tmp/x"], ["/tmp/bx"]),
        ("/tmp/{a,{b,c}}", ["/tmp/c"], ["/tmp/d"]),
        ("/tmp/[a-c]x", ["/tmp/bx"], ["/tmp/dx"]),
        ("/tmp/[^a-c]", ["/tmp/d"], ["/tmp/a"]),
        ("/tmp/{a\\,b,c}", ["/tmp/a,b", "/tmp/c"], ["/tmp/a", "/tmp/b"]),
    ],
)
def test_operator_semantics(pattern: str, yes: list[str], no: list[str]) -> None:
    for path in yes:
        assert matches(pattern, path), (pattern, path)
    for path in no:
        assert not matches(pattern, path), (pattern, path)
    compile_check(_profile(to_profile_path(pattern)))


def _parser_regexes(text: str) -> list[str]:
    """The regular expression apparmor_parser compiles each profile's one rule to.

    ``-D rule-exprs`` prints, per profile, ``aare: NAME -> NAME`` and then
    ``aare: PATH -> REGEX`` for its rule. Profiles are named ``t0``, ``t1``, ...
    """
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "profile"
        path.write_text(text)
        proc = subprocess.run(
            [parser_path(), "-Q", "-K", "-j", "1", "-o", "/dev/null", "-D", "rule-exprs",
             str(path)],
            capture_output=True, text=True, check=True, timeout=120,
        )
    # Blocks are keyed by profile name: the parser does not keep the file's order.
    blocks: dict[int, list[str]] = {}
    current: list[str] = []
    for line in (proc.stdout + proc.stderr).splitlines():
        if not line.startswith("aare: "):
            continue
        source, _, regex = line[len("aare: "):].partition("   ->   ")
        if re.fullmatch(r"t\d+", source):
            current = blocks.setdefault(int(source[1:]), [])
        else:
            current.append(regex)
    assert sorted(blocks) == list(range(len(blocks))), sorted(blocks)
    assert all(len(b) == 1 for b in blocks.values()), blocks
    return [blocks[i][0] for i in range(len(blocks))]


def test_matching_agrees_with_the_parsers_own_regex() -> None:
    probes = ["/tmp/", "/tmp/a", "/tmp/ab", "/tmp/a/b", "/tmp//x", "/tmp/a/x", "/tmp/x",
              "/tmp/ax", "/tmp/bx", "/tmp/dx", "/tmp/c", "/tmp/d", "/tmp/a,b", "/tmp/{a,b}",
              "/tmp/*", "/tmp/a*b", "/tmp/abc/d/e", "/tmp/.hidden", "/tmp/a.b"]
    patterns = [
        "/tmp/*", "/tmp/*a", "/tmp/a*", "/tmp/**", "/tmp/a**", "/tmp/*/x", "/tmp/*\\/x",
        "/tmp/**/x", "/tmp/?", "/tmp/?*", "/tmp/***", "/tmp/{a,b}", "/tmp/{a,}x",
        "/tmp/{a,{b,c}}", "/tmp/[a-c]x", "/tmp/[^a-c]", "/tmp/{a\\,b,c}", "/tmp/{*,x}",
        "/tmp/\\*", "/tmp/a\\*b", "/tmp/a.b", "/tmp/**b",
    ]
    for pattern in patterns:
        [regex] = _parser_regexes(
            _profile(to_profile_path(pattern)).replace("profile t ", "profile t0 ")
        )
        for path in probes:
            theirs = re.fullmatch(regex, path) is not None
            assert matches(pattern, path) == theirs, (pattern, regex, path)


@pytest.mark.parametrize(
    "raw",
    ["/tmp/{a}", "/tmp/a{b,c", "/tmp/a}b", "/tmp/a]b", "/tmp/a[b", "/tmp/[]", "/tmp/[a-]",
     "/tmp/@{x"],
)
def test_malformed_patterns_refused_like_the_parser(raw: str) -> None:
    with pytest.raises(GlobError):
        validate(raw)
    with pytest.raises(AppArmorCompileError):
        compile_check(_profile(f'"{raw}"'))


@pytest.mark.parametrize(
    "raw",
    ["/tmp/a\\", "/tmp/[\\^a]", "/tmp/[a^]", "/tmp/[*]", "/tmp/[z-a]", "/tmp/\x00",
     # apparmor_parser 3.0.8 never returns on these (found by the random-pattern test):
     "/tmp/{,,,}", "/{{,},{,}}", "/{{,,},}//", "/x{{,},,}", "/{,}", "/{,,{,,a}}",
     "/{{,a,},,}"],
)
def test_patterns_the_parser_reads_surprisingly_are_refused(raw: str) -> None:
    # ``[\^a]`` compiles as ``[^a]`` and ``[*]`` as a wildcard: refuse rather than guess.
    with pytest.raises(GlobError):
        parse(raw)


def test_regex_is_anchored_and_cached() -> None:
    assert glob_to_regex("/a/*") is glob_to_regex("/a/*")
    assert not matches("/a/b", "/a/bc")
    assert not matches("/a/b", "/x/a/b")


# --- writing into a profile ------------------------------------------------------------------


def test_plain_paths_stay_unquoted_as_in_the_seed() -> None:
    assert to_profile_path("/usr/lib/x86_64-linux-gnu/**") == "/usr/lib/x86_64-linux-gnu/**"
    # A comma always quotes: unquoted, ``,,`` ends the token (``/{a,,b} r,`` is refused).
    assert to_profile_path("/etc/{passwd,group}") == '"/etc/{passwd,group}"'
    assert to_profile_path("/x/{a,,b}") == '"/x/{a,,b}"'
    compile_check(_profile(to_profile_path("/x/{a,,b}")))
    assert to_profile_path("/tmp/a b") == '"/tmp/a b"'


def test_not_absolute_is_refused() -> None:
    for bad in ("tmp/x", "", "*/x", "{/a,/b}"):
        with pytest.raises(GlobError):
            to_profile_path(bad)


def test_injection_name_becomes_one_escaped_token() -> None:
    token = to_profile_path(escape_literal("/tmp/x rw,\n  /** rwx,\n"))
    assert "\n" not in token
    assert token == '"/tmp/x rw\\,\\x0a  /\\*\\* rwx\\,\\x0a"'


def test_surrogate_escaped_bytes_are_written_exactly() -> None:
    literal = os.fsdecode(b"/tmp/a\xffb\x80")
    token = to_profile_path(escape_literal(literal))
    assert token == '"/tmp/a\\xffb\\x80"'
    with pytest.raises(GlobError):
        to_profile_path("/tmp/\ud800")  # a lone surrogate that stands for no byte


def test_trailing_backslash_cannot_swallow_the_next_rule() -> None:
    # Found by the property test: ``"...\\\\"`` followed by another quoted rule made the
    # parser's lexer read both as one string.
    a, b = escape_literal("/tmp/a\\"), escape_literal('/tmp/b" rw,\n  /** rwx,\n  "/c')
    text = _profile(to_profile_path(a), to_profile_path(b))
    compile_check(text)
    assert compile_binary(text) == compile_binary(
        _profile(_hex_token("/tmp/a\\"), _hex_token('/tmp/b" rw,\n  /** rwx,\n  "/c'))
    )


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet=HOSTILE, min_size=1, max_size=24), min_size=1, max_size=25))
def test_tokens_compile_to_the_same_policy_as_byte_spelling(names: list[str]) -> None:
    literals = sorted({"/t/" + n for n in names})
    ours = _profile(*(to_profile_path(escape_literal(p)) for p in literals))
    reference = _profile(*(_hex_token(p) for p in literals))
    assert compile_binary(ours) == compile_binary(reference)


def test_byte_spelling_oracle_tells_a_wildcard_from_a_literal_star() -> None:
    # The binary comparison above must be able to fail: a real star compiles differently.
    assert compile_binary(_profile("/t/a*")) != compile_binary(_profile(_hex_token("/t/a*")))
    assert compile_binary(_profile('"/t/a\\*"')) == compile_binary(_profile(_hex_token("/t/a*")))


# Random patterns from the grammar, matched by us and by the parser's compiled regex.
_ATOMS = st.sampled_from(["a", "b", "x", ".", "/", "*", "**", "?", "\\*", "\\{", "\\,",
                          "[a-c]", "[^ab]", "[x.]", "-", "\\\\"])
#: At most this many stars (and 8 single-character wildcards) per pattern: the parser's
#: DFA construction is exponential in the worst case (see MAX_SINGLE_WILDCARDS).
_MAX_STARS = 3


@st.composite
def _patterns(draw: st.DrawFn, depth: int = 0) -> str:
    parts = draw(st.lists(_ATOMS, min_size=0, max_size=4))
    if depth < 2 and draw(st.booleans()):
        alts = draw(st.lists(_patterns(depth=depth + 1), min_size=2, max_size=3))
        parts.insert(draw(st.integers(0, len(parts))), "{" + ",".join(alts) + "}")
    return "".join(parts)


# Derandomized: random operator patterns keep finding inputs on which apparmor_parser
# itself never returns (now refused by parse); a fixed example set keeps CI repeatable.
@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    st.lists(_patterns(), min_size=1, max_size=30),
    st.lists(st.text(alphabet="abx./-*{,\\c", max_size=7), min_size=5, max_size=30),
)
def test_random_patterns_match_what_the_parser_compiles(
    bodies: list[str], probes: list[str]
) -> None:
    # Unique tokens: the parser prints the expression of a rule text it has seen once.
    tokens: dict[str, str] = {}
    for b in bodies:
        if b.count("*") > _MAX_STARS or b.count("?") + b.count("[") > 8:
            continue
        try:
            tokens[to_profile_path("/" + b)] = "/" + b
        except GlobError:
            continue  # refused on purpose (tested above)
    patterns = list(tokens.values())
    text = "".join(f"profile t{i} {{\n  {t} r,\n}}\n" for i, t in enumerate(tokens))
    regexes = _parser_regexes(text)
    assert len(regexes) == len(patterns)
    paths = ["/" + p for p in probes] + ["/", "//", "/a/", "/a/b"]
    for pattern, regex in zip(patterns, regexes, strict=True):
        for path in paths:
            theirs = re.fullmatch(regex, path) is not None
            assert matches(pattern, path) == theirs, (pattern, regex, path)
