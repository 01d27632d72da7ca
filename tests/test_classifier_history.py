"""A profile is a function of its own behaviour: not of what the worker classified for
other profiles before it, and (for generated names) not of the order its names came in.

The classifier remembers the shapes of random names it decided (templates.py); a memo
shared by a whole worker made ``/tmp/tmpr_e1imsp`` come out ``/tmp/tmp*`` in a worker
that had served other profiles and ``/tmp/tmpr_*`` in a fresh one, and a CI run found
one worker and two workers writing different profiles for the same events."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from armorflow.aaglob import matches
from armorflow.events import Event, make_event
from armorflow.model import BehaviourModel, _name_shape, _name_within
from armorflow.pipeline.classifier import load_default
from armorflow.pipeline.offline import model_recording
from armorflow.pipeline.stages import Stages

#: Python's tempfile alphabet: its names are ``tmp`` + 8 of these.
_TEMPFILE_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_"


def _temp_names(seed: int, n: int) -> list[str]:
    rng = random.Random(seed)
    return ["/tmp/tmp" + "".join(rng.choice(_TEMPFILE_CHARS) for _ in range(8))
            for _ in range(n)]


def _events(profile: str, paths: list[str], ts0: int = 1_000) -> list[Event]:
    return [make_event("file", ts=ts0 + i, profile=profile, path=p, perms="rw", owner=True)
            for i, p in enumerate(paths)]


def _profile(events: list[Event], profile: str) -> str:
    closed = {c.profile: c for c in model_recording(events, Stages.default())}
    text = closed[profile].apparmor
    assert text is not None
    return text


def _memo_sensitive(warm_seed: int, seed: int) -> list[str]:
    """Names of one stream that a memo warmed by another stream decides differently from
    the span model alone."""
    clf = load_default()
    memo = clf.new_memo()
    for path in _temp_names(warm_seed, 40):
        clf.collapse_in(path, memo)
    return [p for p in _temp_names(seed, 400) if clf.collapse_in(p, memo) != clf.pure_collapse(p)]


def test_a_profile_does_not_depend_on_profiles_classified_before_it() -> None:
    sensitive = _memo_sensitive(7, 8)
    assert sensitive, "no name depends on a warm memo: the test needs other seeds"
    others = _events("others", _temp_names(7, 400))
    for name in sensitive[:3]:
        mine = _events("mine", ["/etc/hostname", name])
        alone = _profile(mine, "mine")
        after_others = _profile(others + mine, "mine")
        interleaved = [e for pair in zip(others, mine + others, strict=False) for e in pair]
        assert alone == after_others == _profile(interleaved, "mine"), name


def test_the_order_of_generated_names_does_not_change_the_profile() -> None:
    """A name the span model alone gives a narrower glob (``tmpl_*``) comes out ``tmp*``
    once the model's memo knows the shape: first or last, the profile is the same."""
    clf = load_default()
    names = _temp_names(8, 400)
    narrower = [n for n in names if clf.pure_collapse(n) not in (n, "/tmp/tmp*")]
    assert narrower, "no name with a narrower glob: the test needs another seed"
    rest = [n for n in names if n not in narrower][:80]
    orders = [narrower + rest, rest + narrower]
    for seed in range(3):
        shuffled = narrower + rest
        random.Random(seed).shuffle(shuffled)
        orders.append(shuffled)
    profiles = {_profile(_events("p", order), "p") for order in orders}
    assert len(profiles) == 1, "\n----\n".join(sorted(profiles))
    (text,) = profiles
    assert "/tmp/tmp* rw," in text


def _model(rules: list[tuple[str, str, bool]]) -> BehaviourModel:
    model = BehaviourModel()
    for path, perms, owner in rules:
        model.files[(path, "", owner)] = set(perms)
    return model


def test_a_covered_glob_is_folded_into_the_broader_one() -> None:
    model = _model([("/tmp/tmp*", "rw", True), ("/tmp/tmpr_*", "w", True),
                    ("/tmp/tmp*.log", "rw", True), ("/tmp/a*", "r", True)])
    model.collapsed["/tmp/tmpr_*"] = {"/tmp/tmpr_e1imsp"}
    assert model.fold_subsumed() == 2
    assert set(model.files) == {("/tmp/tmp*", "", True), ("/tmp/a*", "", True)}
    assert model.files[("/tmp/tmp*", "", True)] == {"r", "w"}  # not widened
    assert "/tmp/tmpr_e1imsp" in model.collapsed["/tmp/tmp*"]


def test_folding_never_widens_a_rule() -> None:
    """A covered glob with a permission the broader rule lacks, another owner, another
    directory or a link target of its own stays as it is."""
    rules = [("/tmp/tmp*", "r", True), ("/tmp/tmpr_*", "rw", True),
             ("/tmp/tmpq_*", "r", False), ("/var/tmp/tmpz_*", "r", True)]
    model = _model(rules)
    model.files[("/tmp/tmpl_*", "/etc/x", True)] = {"l"}
    assert model.fold_subsumed() == 0
    assert len(model.files) == 5


def test_only_plain_globs_cover_and_only_judgeable_ones_are_covered() -> None:
    model = _model([("/tmp/{a,b}*", "rw", True), ("/tmp/ab*", "r", True),
                    ("/tmp/a**", "rw", True), ("/tmp/a[^x]b", "r", True),
                    ("/tmp/a?", "r", True)])
    model.fold_subsumed()
    # "{a,b}*" is not plain (it covers nothing here), "a**" reaches below /tmp, and a
    # negated class is never judged: only nothing folds
    assert len(model.files) == 5


_PIECES = ["a", "b", "_", "1", "*", "?", "[ab]", "[^a]"]


@st.composite
def _name_and_instances(draw: st.DrawFn) -> tuple[str, list[str]]:
    """A name glob and names it matches (each wildcard filled from a small alphabet)."""
    pieces = draw(st.lists(st.sampled_from(_PIECES), min_size=1, max_size=5))
    fill = {"*": st.text(alphabet="ab_1", max_size=3), "?": st.sampled_from("ab_1"),
            "[ab]": st.sampled_from("ab"), "[^a]": st.sampled_from("b_1")}
    instances = ["".join(draw(fill[p]) if p in fill else p for p in pieces)
                 for _ in range(4)]
    return "".join(pieces), instances


@settings(max_examples=500, deadline=None)
@given(narrow=_name_and_instances(), wide=_name_and_instances())
def test_within_means_every_name_matched_is_matched(
    narrow: tuple[str, list[str]], wide: tuple[str, list[str]]
) -> None:
    (glob, names), (wide_glob, _) = narrow, wide
    if not _name_within(_name_shape(glob), _name_shape(wide_glob)):
        return
    for name in names:
        if name and matches("/d/" + glob, "/d/" + name):
            assert matches("/d/" + wide_glob, "/d/" + name), (glob, wide_glob, name)


def test_within_is_not_vacuous() -> None:
    assert _name_within(_name_shape("tmpr_*"), _name_shape("tmp*"))
    assert _name_within(_name_shape("tmp?x[ab]*.log"), _name_shape("tmp*.log"))
    assert not _name_within(_name_shape("tmp*"), _name_shape("tmpr_*"))
    assert not _name_within(_name_shape("a*b"), _name_shape("ab*"))
    assert not _name_within(_name_shape("tmp*.log"), _name_shape("tmp*.log*"))


def test_no_fold_into_a_glob_the_policy_refuses() -> None:
    """A stored glob the policy refuses is replaced by its examples at close; a rule
    folded into it first would be lost (rows from an older version, a model document)."""
    from armorflow.pipeline.classifier import safety
    from armorflow.pipeline.stages import ClassifierStage, ClosedWindow

    model = _model([("/var/lib/*", "rw", True), ("/var/lib/app-*", "w", True)])
    model.collapsed["/var/lib/*"] = {"/var/lib/a1", "/var/lib/a2"}
    model.collapsed["/var/lib/app-*"] = {"/var/lib/app-x9"}
    assert safety.refusal("/var/lib/*", "rw") is not None
    assert model.fold_subsumed(safety.allows) == 0
    window = ClassifierStage().close(ClosedWindow(
        profile="p", namespace="varmor", policy={}, enforcer="AppArmor", start_ts=0,
        end_ts=1, model=model))
    rules = {path: perms for (path, _old, _owner), perms in window.model.files.items()}
    assert any(matches(p, "/var/lib/app-x9") and "w" in perms for p, perms in rules.items())


def test_folding_keeps_examples_another_rule_uses() -> None:
    model = _model([("/tmp/tmp*", "rw", True), ("/tmp/tmpr_*", "r", True),
                    ("/tmp/tmpr_*", "rw", False)])
    model.executions.add("/tmp/tmpr_*")
    model.collapsed["/tmp/tmpr_*"] = {"/tmp/tmpr_e1imsp"}
    assert model.fold_subsumed() == 1
    assert ("/tmp/tmpr_*", "", False) in model.files
    assert model.collapsed["/tmp/tmpr_*"] == {"/tmp/tmpr_e1imsp"}
    assert "/tmp/tmpr_e1imsp" in model.collapsed["/tmp/tmp*"]


def test_provenance_goes_to_the_rule_that_took_the_fold() -> None:
    model = _model([("/tmp/*", "r", True), ("/tmp/tmp*", "rw", True),
                    ("/tmp/tmpr_*", "rw", True)])
    model.provenance[("file", "/tmp/tmpr_*", "", True)] = (5, ("node/ns/pod/writer",))
    assert model.fold_subsumed() == 1
    assert "node/ns/pod/writer" in model.provenance[("file", "/tmp/tmp*", "", True)][1]
    assert ("file", "/tmp/*", "", True) not in model.provenance


def test_numbers_read_in_secret_places_stay_literal() -> None:
    """A generated-looking name read in /etc, /root or a home must not become a glob that
    reads /etc/shadow or a shell history (the safety policy's secret-files row)."""
    for path in ("/etc/1234567", "/root/99999", "/home/alice/1234567", "/etc/Zq8vN2kLp0Xa"):
        events = [make_event("file", ts=1, profile="p", path=path, perms="r", owner=False),
                  make_event("file", ts=2, profile="p", path="/etc/hostname", perms="r",
                             owner=False)]
        text = _profile(events, "p")
        assert "*" not in text.split("# ---- FILE ----")[1].split("# ----")[0], text
