"""The walkthrough's step 5 exactly as written, with the real pipeline: after minutes of
modeling, `kubectl patch` sets the duration to 1 and the policy turns `Completed`.

The walkthrough's user spends minutes in step 4 before shortening the window; so that the
test does not, the operator (in-process, the same ``OperatorService`` the ``armorflow
operator`` verb runs) reads a clock running two minutes behind: the window it opens began
two minutes ago, the events of step 4 are stamped inside it, and the one-minute duration of
step 5 ends it at once, as it does in the walkthrough. Everything else is real: the
project's Kubernetes API emulator driven with `kubectl`, the embedded broker, an
`armorflow pipeline` worker writing the ArmorProfileModel through its k8s:// sink.
"""

from __future__ import annotations

import base64
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from armorflow.broker import EmbeddedBroker
from armorflow.operator.kube import Kube
from armorflow.operator.service import OperatorService
from support.apparmor_check import compile_check
from support.kube import KubeEmulator, kube_emulator
from support.pipeline import WorkerProcess, publish, workload
from support.waiting import wait_for

pytestmark = [pytest.mark.broker, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
KUBECTL = REPO / ".tools" / "bin" / "kubectl"
PROFILE = "varmor-cluster-varmor-demo-4"
BEHIND_NS = 120 * 1_000_000_000

SEED_POLICY = """
apiVersion: crd.varmor.org/v1beta1
kind: VarmorClusterPolicy
metadata:
  name: demo-4
spec:
  updateExistingWorkloads: true
  target:
    kind: Deployment
    selector:
      matchLabels:
        app: demo-4
  policy:
    enforcer: AppArmorSeccomp
    mode: BehaviorModeling
    modelingOptions:
      duration: 30
"""


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeEmulator]:
    yield from kube_emulator(workdir=tmp_path_factory.mktemp("kube"))



def test_step5_duration_1_completes_the_policy(
    kube: KubeEmulator, broker: EmbeddedBroker, tmp_path: Path
) -> None:
    assert kube.kubeconfig_path is not None

    def kubectl(*args: str, stdin: str | None = None) -> str:
        done = subprocess.run([str(KUBECTL), "--kubeconfig", str(kube.kubeconfig_path), *args],
                              input=stdin, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
        return done.stdout

    def phase() -> str:
        return kubectl("get", "vcpol", "demo-4", "-o", "jsonpath={.status.phase}")

    worker = WorkerProcess(
        broker, app_id=f"step5-{time.time_ns()}", workdir=tmp_path, grace_s=1.0,
        extra=["--sink", f"k8s://?kubeconfig={kube.kubeconfig_path}"],
    ).start()
    service = OperatorService(Kube(kube.api_client()), broker.settings(), resync_s=5,
                              clock=lambda: time.time_ns() - BEHIND_NS)
    try:
        worker.wait_ready()
        service.start()
        # step 2
        kubectl("create", "--validate=false", "-f", "-", stdin=SEED_POLICY)
        # step 3
        wait_for("Modeling", lambda: phase() == "Modeling", timeout_s=60.0, interval_s=0.2)
        start_ts = int(kubectl("get", "vcpol", "demo-4", "-o",
                               "jsonpath={.status.modeling.startTs}"))
        # step 4: what the workloads did, stamped inside the window
        events = workload(PROFILE, start_ts + 1_000_000)
        time.sleep(2)  # the worker has taken the start control
        assert publish(broker, events) == len(events)
        time.sleep(2)  # ... and the events
        # step 5, verbatim
        kubectl("patch", "vcpol", "demo-4", "--type=json", "-p",
                '[{"op": "replace", "path": "/spec/policy/modelingOptions/duration", '
                '"value":1}]')
        patched = time.monotonic()
        wait_for("Completed", lambda: phase() == "Completed", timeout_s=60.0, interval_s=0.2)
        print(f"duration patched to 1 -> Completed: {time.monotonic() - patched:.1f}s")
        shown = kubectl("get", "vcpol", "demo-4")
        print(shown)
        assert shown.split()[10:19] == [
            "demo-4", "AppArmorSeccomp", "BehaviorModeling", "Deployment", "<none>",
            '{"matchLabels":{"app":"demo-4"}}', PROFILE, "true", "Completed"]
        assert service.counters.by_type == {"start": 1, "update": 1}
        # step 6
        profile_name = kubectl("get", "vcpol", "demo-4", "-o", "jsonpath={.status.profileName}")
        content = base64.b64decode(kubectl(
            "get", "ArmorProfileModel", "-n", "varmor", profile_name, "-o",
            "jsonpath={.data.profile.content}")).decode()
        compile_check(content)
        assert f"profile {PROFILE} " in content
    finally:
        service.stop()
        worker.stop()
