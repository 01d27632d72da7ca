"""A real containerd for tests: its own socket and state, one local image, pods over CRI.

No registry can be reached here, so the image is built on the spot as an OCI layout
(one layer: the static busybox and a few applet links) and imported with ``ctr``. It is
both the pause image and the workload image. Pods share the node's network and IPC
namespaces, so no CNI plugin is needed; each container still gets its own mount and pid
namespaces, a runc cgroup under ``/kubepods/...`` (cgroupfs driver, as a kubelet with
``cgroupDriver: cgroupfs`` asks for) and the kubelet's labels, which is what the agent's
attribution reads.

Requires root and Debian's ``containerd``, ``runc`` and ``busybox-static`` (``make setup``).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

from armorflow.agents.cri import CriClient, CriError
from armorflow.agents.cri import api_pb2 as api

IMAGE: Final = "armorflow.test/busybox:1"
BUSYBOX: Final = Path("/bin/busybox")
APPLETS: Final = ("sh", "cat", "id", "ls", "sleep", "unshare", "echo", "true")

_CONFIG: Final = """\
version = 2
root = "{root}"
state = "{state}"
[grpc]
  address = "{socket}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{image}"
  # the pause process asks for oom_score_adj -998; an unprivileged-resource sandbox (this
  # VM) refuses to lower it, so keep it at containerd's own value
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    # native copies layers: works on any filesystem, overlay-on-overlay included
    snapshotter = "native"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{root}/cni-bin"
    conf_dir = "{root}/cni-conf"
"""


def missing_tools() -> list[str]:
    return [t for t in ("containerd", "runc", "ctr") if shutil.which(t) is None] + (
        [] if BUSYBOX.is_file() else [str(BUSYBOX)])


def _blob(store: dict[str, bytes], data: bytes, media_type: str) -> dict[str, Any]:
    digest = hashlib.sha256(data).hexdigest()
    store[digest] = data
    return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}


def _layer(extra_files: dict[str, Path] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in ("bin", "etc", "tmp", "proc", "sys", "dev", "run"):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if name == "tmp" else 0o755
            tar.addfile(info)
        tar.add(str(BUSYBOX), "bin/busybox")
        for applet in APPLETS:
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(info)
        for name, source in sorted((extra_files or {}).items()):
            tar.add(str(source), name)
        for name, text in (("etc/hostname", b"armorflow-test\n"),
                           ("etc/passwd", b"root:x:0:0:root:/:/bin/sh\n"),
                           ("etc/group", b"root:x:0:\n")):
            info = tarfile.TarInfo(name)
            info.size = len(text)
            tar.addfile(info, io.BytesIO(text))
    return buf.getvalue()


def build_image(out: Path, name: str = IMAGE,
                extra_files: dict[str, Path] | None = None) -> Path:
    """Write an OCI image layout tarball holding busybox (and ``extra_files``: path in
    the image -> file on the host), named ``name``."""
    store: dict[str, bytes] = {}
    layer = _layer(extra_files)
    layer_desc = _blob(store, layer, "application/vnd.oci.image.layer.v1.tar")
    config = {
        "architecture": "amd64", "os": "linux",
        # Serves as the pause image too: a sandbox only needs a process that stays.
        "config": {"Entrypoint": ["/bin/sleep", "2147483647"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(layer).hexdigest()}"]},
    }
    config_desc = _blob(store, json.dumps(config).encode(),
                        "application/vnd.oci.image.config.v1+json")
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": config_desc, "layers": [layer_desc]}
    manifest_desc = _blob(store, json.dumps(manifest).encode(),
                          "application/vnd.oci.image.manifest.v1+json")
    manifest_desc["annotations"] = {"io.containerd.image.name": name,
                                    "org.opencontainers.image.ref.name": name.rsplit(":", 1)[1]}
    with tarfile.open(out, "w") as tar:
        def add(member: str, data: bytes) -> None:
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        add("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add("index.json", json.dumps({"schemaVersion": 2, "manifests": [manifest_desc]}).encode())
        for digest, data in store.items():
            add(f"blobs/sha256/{digest}", data)
    return out


@dataclass
class Pod:
    """A running pod sandbox and what was asked for it."""

    sandbox_id: str
    name: str
    namespace: str
    uid: str
    config: api.PodSandboxConfig
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    containers: dict[str, str] = field(default_factory=dict)  # name -> container id


class Containerd:
    """One containerd daemon under ``workdir``; stop() removes its pods and processes."""

    def __init__(self, workdir: Path, *, extra_files: dict[str, Path] | None = None):
        self.workdir = workdir
        #: image path -> host file, added to the image beside busybox
        self.extra_files = dict(extra_files or {})
        self.root = workdir / "root"
        self.state = workdir / "state"
        self.socket = workdir / "containerd.sock"
        self.logs = workdir / "logs"
        self.proc: subprocess.Popen[bytes] | None = None
        self.pods: list[Pod] = []
        #: Every pod uid ever run: their cgroups are emptied and removed at stop().
        self._pod_uids: list[str] = []
        self._client: CriClient | None = None

    @property
    def endpoint(self) -> str:
        return f"unix://{self.socket}"

    @property
    def client(self) -> CriClient:
        if self._client is None:
            self._client = CriClient(self.endpoint, timeout_s=30.0)
        return self._client

    def start(self, timeout_s: float = 30.0) -> Self:
        try:
            return self._start(timeout_s)
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout_s: float) -> Self:
        missing = missing_tools()
        if missing:
            raise RuntimeError(f"containerd tests need {', '.join(missing)}: run `make setup`")
        for d in (self.root, self.state, self.logs):
            d.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "config.toml"
        config.write_text(_CONFIG.format(root=self.root, state=self.state, socket=self.socket,
                                         image=IMAGE))
        with (self.workdir / "containerd.log").open("ab") as log:
            self.proc = subprocess.Popen(["containerd", "--config", str(config)],
                                         stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"containerd exited: see {self.workdir / 'containerd.log'}")
            try:
                if self.socket.exists():
                    self.client.version()
                    break
            except CriError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("containerd's CRI did not answer in time")
            time.sleep(0.2)
        self._ctr("images", "import", "--snapshotter", "native",
                  str(build_image(self.workdir / "image.tar", extra_files=self.extra_files)))
        return self

    def _ctr(self, *args: str) -> None:
        subprocess.run(["ctr", "--address", str(self.socket), "--namespace", "k8s.io", *args],
                       check=True, capture_output=True, timeout=120)

    def run_pod(self, name: str, namespace: str, *, labels: dict[str, str] | None = None,
                annotations: dict[str, str] | None = None) -> Pod:
        """RunPodSandbox the way a kubelet with the cgroupfs driver would."""
        uid = str(uuid.uuid4())
        self._pod_uids.append(uid)
        labels = dict(labels or {})
        annotations = dict(annotations or {})
        # The kubelet adds these to the pod's labels on the sandbox; so do we.
        sandbox_labels = {**labels, "io.kubernetes.pod.name": name,
                          "io.kubernetes.pod.namespace": namespace,
                          "io.kubernetes.pod.uid": uid}
        log_dir = self.logs / uid
        log_dir.mkdir()
        # No hostname: the node's UTS namespace is shared with the network. The network
        # is the node's (no CNI); the cgroup parent is where a cgroupfs kubelet puts pods.
        config = api.PodSandboxConfig(
            metadata=api.PodSandboxMetadata(name=name, uid=uid, namespace=namespace),
            log_directory=str(log_dir), labels=sandbox_labels, annotations=annotations,
            linux=api.LinuxPodSandboxConfig(
                cgroup_parent=f"/kubepods/besteffort/pod{uid}",
                security_context=api.LinuxSandboxSecurityContext(
                    namespace_options=api.NamespaceOption(network=api.NODE))))
        client = self.client
        resp = client.call(client.stub.RunPodSandbox, api.RunPodSandboxRequest(config=config),
                           timeout_s=60)
        pod = Pod(resp.pod_sandbox_id, name, namespace, uid, config, labels, annotations)
        self.pods.append(pod)
        return pod

    def run_container(self, pod: Pod, name: str, command: list[str], *,
                      seccomp_localhost: Path | None = None) -> str:
        """CreateContainer + StartContainer; returns the container id.

        ``seccomp_localhost``: run under that Seccomp profile file, as the kubelet asks
        for ``securityContext.seccompProfile: {type: Localhost, localhostProfile: REL}``
        (it passes the absolute path, REL under its ``seccomp/`` root). Without it the
        container is unconfined, as CRI's default is.
        """
        linux = None
        if seccomp_localhost is not None:
            linux = api.LinuxContainerConfig(security_context=api.LinuxContainerSecurityContext(
                seccomp=api.SecurityProfile(profile_type=api.SecurityProfile.Localhost,
                                            localhost_ref=str(seccomp_localhost))))
        config = api.ContainerConfig(
            metadata=api.ContainerMetadata(name=name), image=api.ImageSpec(image=IMAGE),
            command=command, log_path=f"{name}.log",  # under the pod's log directory
            labels={"io.kubernetes.container.name": name, "io.kubernetes.pod.name": pod.name,
                    "io.kubernetes.pod.namespace": pod.namespace,
                    "io.kubernetes.pod.uid": pod.uid},
            linux=linux)
        client = self.client
        resp = client.call(client.stub.CreateContainer, api.CreateContainerRequest(
            pod_sandbox_id=pod.sandbox_id, config=config, sandbox_config=pod.config),
            timeout_s=60)
        container_id = resp.container_id
        client.call(client.stub.StartContainer,
                    api.StartContainerRequest(container_id=container_id), timeout_s=60)
        pod.containers[name] = container_id
        return container_id

    def wait_exit(self, container_id: str, timeout_s: float = 30.0) -> api.ContainerStatus:
        """The container's status once it has exited (exit_code, reason, message)."""
        client = self.client
        deadline = time.monotonic() + timeout_s
        while True:
            status = client.call(client.stub.ContainerStatus, api.ContainerStatusRequest(
                container_id=container_id), timeout_s=30).status
            if status.state == api.CONTAINER_EXITED:
                return status
            if time.monotonic() > deadline:
                raise TimeoutError(f"container {container_id[:12]} still runs")
            time.sleep(0.1)

    def container_log(self, pod: Pod, name: str) -> list[str]:
        """The lines the container wrote (CRI log format: TIME STREAM TAG TEXT)."""
        path = self.logs / pod.uid / f"{name}.log"
        return [line.split(" ", 3)[3] for line in path.read_text().splitlines()
                if line.count(" ") >= 3]

    def container_pids(self, container_id: str) -> list[int]:
        """The host pids in a container's cgroup (runc's cgroupfs layout)."""
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if container_id in (entry / "cgroup").read_text():
                        pids.append(int(entry.name))
                except OSError:
                    continue
        return pids

    def remove_pod(self, pod: Pod) -> None:
        client = self.client
        client.call(client.stub.StopPodSandbox,
                    api.StopPodSandboxRequest(pod_sandbox_id=pod.sandbox_id), timeout_s=60)
        client.call(client.stub.RemovePodSandbox,
                    api.RemovePodSandboxRequest(pod_sandbox_id=pod.sandbox_id), timeout_s=60)
        self.pods.remove(pod)

    def stop(self) -> None:
        for pod in list(self.pods):
            try:
                self.remove_pod(pod)
            except CriError:
                self.pods.remove(pod)
        if self._client is not None:
            self._client.close()
            self._client = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._kill_leftovers()

    def _cgroup_dirs(self, uid: str) -> list[Path]:
        """The pod's cgroup directories in every hierarchy (v1 controllers, v2)."""
        pattern = f"kubepods/besteffort/pod{uid}"
        return [d for d in (*Path("/sys/fs/cgroup").glob(f"*/{pattern}"),
                            Path("/sys/fs/cgroup") / pattern) if d.is_dir()]

    def _kill_leftovers(self) -> None:
        """Shims, containers and cgroups of this daemon that outlived it; then mounts.

        A container's init calls setsid, so it is not in its shim's process group: when
        the runtime could not stop a pod (the daemon was killed, say), the processes are
        found through the pod's cgroups instead.
        """
        marker = str(self.socket).encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if marker in (entry / "cmdline").read_bytes():
                    os.killpg(int(entry.name), signal.SIGKILL)
            except (OSError, ProcessLookupError):
                continue
        for uid in self._pod_uids:
            dirs = self._cgroup_dirs(uid)
            for directory in dirs:
                for procs in directory.rglob("cgroup.procs"):
                    for pid in procs.read_text().split():
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(int(pid), signal.SIGKILL)
            for directory in dirs:
                for _ in range(50):  # a killed process leaves its cgroup a moment later
                    leaves = sorted((d for d in directory.rglob("*") if d.is_dir()),
                                    key=lambda d: len(d.parts), reverse=True)
                    try:
                        for d in [*leaves, directory]:
                            d.rmdir()
                        break
                    except OSError:
                        time.sleep(0.05)
        self._pod_uids.clear()
        mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()
                  if line.split()[1].startswith(str(self.workdir))]
        for mountpoint in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", mountpoint], check=False, capture_output=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
