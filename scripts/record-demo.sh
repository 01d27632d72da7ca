#!/usr/bin/env bash
# Re-record armorflow/data/demo-4.jsonl, the workload `armorflow demo` replays: the seed's
# step 4 commands, run for real under `armorflow trace` (eBPF; needs root). Each command
# runs as a local "container" attributed like the seed's pods; /root is a private tmpfs
# inside it so that the recording does not write to the host's /root.
set -euo pipefail
cd "$(dirname "$0")/.."
P=varmor-cluster-varmor-demo-4
OUT=armorflow/data/demo-4.jsonl
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
trace() { .venv/bin/armorflow trace --profile "$P" --node node-1 "$@"; }

# default/demo-4, container c0 (debian): read the shadow file, unshare a user namespace.
trace --namespace default --pod demo-4-6b98965dc-5xfqn --container c0 --out "$tmp/c0.jsonl" \
  -- bash -c 'cat /etc/shadow > /dev/null; bash -c "unshare -Un id"'
# demo/demo-4, container c1: write and read back a file in /root, then sleep.
trace --namespace demo --pod demo-4-5f4d94f7d9-5st8f --container c1 --out "$tmp/c1.jsonl" \
  -- bash -c 'mount -t tmpfs tmpfs /root && echo demo-4-5f4d94f7d9-5st8f/c1 > /root/c1 && cat /root/c1 && sleep 1 && umount /root'
# (demo/demo-4 c0 is opted out by the seed's annotations: it produces nothing.)
cat "$tmp/c0.jsonl" "$tmp/c1.jsonl" > "$OUT"
echo "recorded $(wc -l < "$OUT") events into $OUT ($(du -h "$OUT" | cut -f1))"
