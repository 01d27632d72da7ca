"""Read-only content (issue #15, item 4): many files read, and only read, below one place
become one read rule, so that the next run may read another file of the same tree; never
for write or exec, never in places where reading an unseen file is a leak."""

from __future__ import annotations

import pytest

from armorflow.aaglob import matches
from armorflow.events import make_event
from armorflow.model import BehaviourModel
from armorflow.pipeline.classifier import load_default
from armorflow.pipeline.classifier.content import content_globs, generalise_content, refusal
from armorflow.pipeline.classifier.origins import model_origins
from armorflow.pipeline.stages import ClassifierStage, ClosedWindow, RenderStage
from support.apparmor_check import compile_check

SITE = ["index.html", "about.html", "css/site.css", "css/print.css", "img/logo.png",
        "img/hero.jpg", "img/icon.svg", "js/app.js", "js/vendor.js", "docs/guide.html",
        "docs/faq.html", "robots.txt"]


def _model(files: dict[str, str], pod: str = "web-1") -> BehaviourModel:
    model = BehaviourModel()
    for i, (path, perms) in enumerate(sorted(files.items())):
        model.add(make_event("file", ts=1_000 + i, profile="web", pod=pod, path=path,
                             perms=perms, owner=False))
    return model


def _rules(model: BehaviourModel) -> dict[str, str]:
    return {path: "".join(sorted(perms)) for (path, _old, _owner), perms in model.files.items()}


def test_a_served_tree_becomes_one_read_rule_and_nothing_more() -> None:
    files = {f"/srv/www/{name}": "r" for name in SITE}
    files["/srv/www/uploads/a1.bin"] = "w"       # written: keeps its own rule
    files["/srv/www/cgi/run.sh"] = "rm"          # mapped executable: keeps its own rule
    files["/srv/www/"] = "r"                     # the tree's own listing
    model = _model(files)
    made = generalise_content(model)
    assert [(g.pattern, g.files, g.directories) for g in made] == [("/srv/www/**", 12, 5)]
    rules = _rules(model)
    assert rules == {"/srv/www/**": "r", "/srv/www/uploads/a1.bin": "w",
                     "/srv/www/cgi/run.sh": "mr", "/srv/www/": "r"}
    # Run 2 asks for pages run 1 never did: allowed to read, not to write or run.
    assert matches("/srv/www/**", "/srv/www/blog/2026/post.html")
    assert not matches("/srv/www/**", "/srv/wwwx/a") and not matches("/srv/www/**", "/etc/x")
    # The replaced rules' provenance goes to the glob (the earliest of them: about.html,
    # right after the listing); examples are recorded for review.
    assert model.provenance[("file", "/srv/www/**", "", False)][0] == 1_001
    assert len(model.collapsed["/srv/www/**"]) == 3


def test_a_directory_of_read_files_becomes_dir_star_from_five_on() -> None:
    four = _model({f"/app/templates/{n}.tmpl": "r" for n in ("a", "b", "c", "d")})
    assert generalise_content(four) == [] and len(four.files) == 4
    five = _model({f"/app/templates/{n}.tmpl": "r" for n in ("a", "b", "c", "d", "e")})
    (made,) = generalise_content(five)
    assert made.pattern == "/app/templates/*" and _rules(five) == {"/app/templates/*": "r"}
    # A subdirectory's listing is not a file of the directory: it keeps its rule.
    assert not matches("/app/templates/*", "/app/templates/sub/")


@pytest.mark.parametrize("place", [
    "/etc/nginx/conf.d", "/root/data", "/home/alice/site", "/proc/self", "/sys/fs/x",
    "/run/app", "/var/run/app", "/var/lib/kubelet/pods/uid/volumes", "/var/log/app",
    "/srv/app/secrets", "/srv/app/private-keys", "/opt/tls", "/data/.ssh", "/srv/Vault.d",
    "/srv/app/API_TOKENS",
])
def test_never_in_places_where_reading_an_unseen_file_leaks(place: str) -> None:
    assert refusal(place) is not None
    files = {f"{place}/{name}": "r" for name in SITE}
    model = _model(files)
    assert content_globs(model) == {}
    generalise_content(model)
    assert _rules(model) == {f"{place}/{name}": "r" for name in SITE}


def test_a_tree_never_holds_a_refused_place() -> None:
    # Content read in /var/lib/app and /var/lib/kubelet/...: /var/lib/** would reach the
    # kubelet's state, and a tree with a secrets directory read inside it is not made.
    files = {f"/var/lib/app{i}/{name}": "r" for i in range(3) for name in ("a", "b", "c", "d")}
    assert "/var/lib/**" not in content_globs(_model(files))
    files = {f"/srv/app/{name}": "r" for name in SITE} | {"/srv/app/secrets/db.txt": "r"}
    assert "/srv/app/**" not in content_globs(_model(files))


HEADERS = ["bits/types.h", "bits/stdio.h", "bits/wordsize.h", "bits/types/FILE.h",
           "bits/types/__FILE.h", "gnu/stubs.h", "gnu/stubs-64.h", "sys/cdefs.h",
           "bits/floatn.h", "bits/time64.h"]


def test_a_tree_read_at_its_top_too_widens_to_its_top() -> None:
    """gcc's shape: many headers in one subtree and a few in the directory above it.
    Files read in the directory itself show the content spans it, so the next program's
    headers there are covered; one file there does not."""
    arch = {f"/usr/include/x86_64-linux-gnu/{h}": "r" for h in HEADERS}
    top = {f"/usr/include/{h}": "r" for h in ("stdio.h", "features.h", "stdc-predef.h")}
    made = content_globs(_model(arch | top))
    assert list(made) == ["/usr/include/**"]
    assert made["/usr/include/**"].files == 13
    assert matches("/usr/include/**", "/usr/include/string.h")
    one = content_globs(_model(arch | {"/usr/include/stdio.h": "r"}))
    assert list(one) == ["/usr/include/x86_64-linux-gnu/**"]
    # A spanning ancestor that is refused (or holds a refused place) keeps the narrower
    # tree: /var/lib/** would reach the kubelet's state.
    app = {f"/var/lib/app/{h}": "r" for h in HEADERS}
    above = {f"/var/lib/{n}": "r" for n in ("a.txt", "b.txt", "c.txt")}
    assert list(content_globs(_model(app | above))) == ["/var/lib/app/**"]


def test_trees_stay_below_the_second_level_and_write_or_exec_never_widen() -> None:
    # Twelve files over five directories right under /srv: /srv/** would be too wide.
    model = _model({f"/srv/{name}": "r" for name in SITE})
    assert "/srv/**" not in content_globs(model)
    # Written, appended, linked, locked and exec-mapped files are never generalised.
    for perms in ("w", "a", "rw", "l", "rk", "rm"):
        model = _model({f"/data/set/{i}.csv": perms for i in range(20)})
        assert content_globs(model) == {}, perms


def test_hostile_directory_names_stay_literal_in_the_glob() -> None:
    base = "/srv/we*b/{a,b}"
    model = _model({f"{base}/{name}": "r" for name in SITE})
    (made,) = generalise_content(model)
    assert made.pattern == "/srv/we\\*b/\\{a\\,b\\}/**"
    assert matches(made.pattern, f"{base}/new.html")
    assert not matches(made.pattern, "/srv/weXb/a/new.html")
    assert not matches(made.pattern, "/srv/we*b/a/new.html")


def test_the_classifier_stage_makes_it_says_so_and_the_profile_compiles() -> None:
    files = {f"/usr/share/nginx/html/{name}": "r" for name in SITE}
    files["/var/cache/nginx/client_temp/0000000001"] = "rw"
    window = ClosedWindow("web", "default", {}, "AppArmor", 0, 1, _model(files))
    window = RenderStage().close(ClassifierStage().close(window))
    assert window.counts["contentGlobs"] == 1
    assert window.notes == ["/usr/share/nginx/html/** r: read-only content: 12 files read "
                            "in 5 directories, generalised for reading"]
    assert window.apparmor is not None and '/usr/share/nginx/html/** r,' in window.apparmor
    compile_check(window.apparmor)
    (origin,) = [o for o in model_origins(window.model, load_default())
                 if o.pattern == "/usr/share/nginx/html/**"]
    assert origin.describe().startswith("read-only content")


def test_it_can_be_turned_off() -> None:
    files = {f"/usr/share/nginx/html/{name}": "r" for name in SITE}
    window = ClosedWindow("web", "default", {}, "AppArmor", 0, 1, _model(files))
    window = ClassifierStage(content=False).close(window)
    assert "contentGlobs" not in window.counts and len(window.model.files) == len(SITE)
