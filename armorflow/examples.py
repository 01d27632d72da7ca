"""Examples shown at the end of every verb's ``--help``: one table, so that a verb added
without examples fails tests/test_packaging.py instead of shipping without them."""

from __future__ import annotations

from typing import Final

EXAMPLES: Final[dict[str, tuple[str, ...]]] = {
    "version": ("armorflow version",),
    "broker": ("armorflow broker                      # noida-db on 127.0.0.1:9092",
               "armorflow broker --impl tansu --port 19092"),
    "topics": ("armorflow topics                      # the layout",
               "armorflow topics --create -b kafka-1:9092"),
    "agent": ("armorflow agent --node $(hostname) --cri-endpoint /run/containerd/containerd.sock",
              "armorflow agent --local-profile demo --duration 60",
              "armorflow agent --kube --seccomp-root /var/lib/kubelet/seccomp"),
    "audit": ("armorflow audit --from /var/log/audit/audit.log --out events.jsonl",
              "armorflow audit --follow --audit-log-paths "
              "'/var/log/audit/audit.log|/var/log/kern.log'"),
    "trace": ("armorflow trace --profile web --out web.jsonl -- nginx -g 'daemon off;'",
              "armorflow trace --profile job -b 127.0.0.1:9092 -- ./job.sh"),
    "pipeline": ("armorflow pipeline --sink file:///var/lib/armorflow/out",
                 "armorflow pipeline -b kafka-1:9092 --sink k8s:// --instance-id $POD_NAME"),
    "model": ("armorflow model --from web.jsonl --out models/",
              "armorflow model --from snapshot.jsonl.zst --out models/ --duration 10m"),
    "collapse": ("printf '/tmp/tmpab12cd9x\\n' | armorflow collapse --explain",
                 "armorflow collapse --perms w < paths.txt"),
    "operator": ("armorflow operator --kubeconfig ~/.kube/config -b kafka-1:9092",),
    "record": ("armorflow record --from-beginning --out snapshot.jsonl.zst",
               "armorflow record --topics file,exec --until 5m --out live.jsonl"),
    "replay": ("armorflow replay web.jsonl --rebase-ts now",
               "armorflow replay web.jsonl --speed 10 --only-profile web"),
    "query": ("armorflow query \"SELECT comm, count(*) FROM events GROUP BY comm\" "
              "--from web.jsonl",
              "armorflow query \"SELECT path FROM events WHERE kind='file'\" "
              "--from topics:file -o json"),
    "report": ("armorflow report models/ --html report.html",
               "armorflow report models/varmor/web.model.json -o json",
               "armorflow report --diff yesterday/web.model.json today/web.model.json"),
    "demo": ("armorflow demo",),
    "enforce": ("armorflow enforce seccomp --model out/varmor/web.yaml",),
    "enforce seccomp": (
        "armorflow enforce seccomp --model out/varmor/web.yaml --root /var/lib/kubelet/seccomp",
        "armorflow enforce seccomp --profile web --models out/ --namespace varmor"),
    "window": ("armorflow window start my-profile --duration 30m",),
    "window start": (
        "armorflow window start varmor-default-web --duration 30m --policy default/web",),
    "window update": ("armorflow window update varmor-default-web --duration 1m   # end early",),
    "window stop": ("armorflow window stop varmor-default-web",),
    "window delete": ("armorflow window delete varmor-default-web",),
    "classifier": ("armorflow classifier info",),
    "classifier train": ("armorflow classifier train --out /tmp/span_model.json.gz --seed 1",),
    "classifier info": ("armorflow classifier info",),
    "classifier evaluate": ("armorflow classifier evaluate --seed 7",),
}


def epilog(verb: str) -> str | None:
    """The Examples block of ``verb`` (space-separated path), for its ``--help``."""
    lines = EXAMPLES.get(verb)
    if not lines:
        return None
    # Two spaces keep each example on its own line in rich's help output.
    return "Examples:\n\n" + "\n\n".join(f"  {line}" for line in lines)
