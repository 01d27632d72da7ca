"""Test support, never shipped: real parts the tests start and the checks they run.

``containerd`` (a real CRI runtime), ``apparmor_check`` (apparmor_parser), ``seccomp_apply``
(a command under a Seccomp profile), ``pipeline`` (a worker and its topics), ``waiting``
(the one ``wait_for``), and here the Kubernetes API emulator over HTTP (kmock 0.8 plus a
stateful layer).

Use it from any test that needs a Kubernetes API::

    from support import KubeEmulator, kube_emulator_fixture, CHART_CRDS  # tests/support

    kube = kube_emulator_fixture(scope="module")      # a pytest fixture, chart CRDs loaded

    def test_x(kube: KubeEmulator) -> None:
        api = kube.api_client()                        # official kubernetes.client.ApiClient
        kube.kubeconfig_path                           # for subprocesses, kubectl, kopf
        kube.objects("crd.varmor.org", "v1beta1", "armorprofilemodels")  # stored snapshot

    with KubeEmulator([CHART_CRDS]) as kube: ...       # or as a context manager

``KubeEmulator(crds, host=, port=, history=)``: ``start()`` / ``stop()``, ``url``,
``kubeconfig()`` / ``write_kubeconfig(path)``, ``api_client()``, ``add_crds(paths)``,
``objects(group, version, plural, namespace=None)``, ``call(fn)`` (run ``fn`` on the
emulator's loop), ``store`` (:class:`Store`) and ``handler`` (the kmock root: its DSL
injects failures ahead of the store, e.g. ``kube.call(lambda: kube.handler[
kmock.method.PUT] ** 1 << 500)``; mutate it only through ``call``).

What the layer emulates over kmock: ``uid``/``resourceVersion`` (one global counter)/
``generation``/``creationTimestamp``; create answers 201 (409 if it exists); PUT
replaces with a ``resourceVersion`` precondition (409 Conflict); PATCH with JSON merge
patch, JSON patch and (built-ins only, approximated as merge) strategic merge patch;
DELETE with finalizers and preconditions; ``status`` as a subresource (main writes keep
the stored status, ``/status`` writes change only the status); label and field
(``metadata.name``/``namespace``) selectors on list and watch; watch events
ADDED/MODIFIED/DELETED from a revision (410 when too old) with ``timeoutSeconds``;
custom resources pruned and checked against their CRD's ``openAPIV3Schema`` (422);
stored objects over 1.5 MiB refused with etcd's ``etcdserver: request is too large`` (500)
and request bodies over 3 MiB with 413; discovery for the built-in kinds in
:data:`BUILTINS` and every CRD, and ``meta.k8s.io/v1 Table`` answers from printer columns
for ``kubectl get``.

Not emulated (a test needing them needs a real cluster): admission (webhooks, quota,
RBAC, namespace existence), defaulting, CEL ``x-kubernetes-validations``, ``format``
checks, server-side apply, strategic-merge directives, built-in kinds' schemas and
controllers (nothing creates pods for a Deployment), garbage collection of owner
references, multi-version CRD conversion, bookmarks and ``/openapi``.
"""

from support.kube import CHART_CRDS, KubeEmulator, kube_emulator, kube_emulator_fixture
from support.kube_schema import BUILTINS, ResourceType, load_crd_documents, types_from_crd
from support.kube_store import (
    ETCD_TOO_LARGE,
    MAX_REQUEST_BYTES,
    MAX_STORED_BYTES,
    ApiError,
    Store,
)

__all__ = [
    "BUILTINS",
    "CHART_CRDS",
    "ETCD_TOO_LARGE",
    "MAX_REQUEST_BYTES",
    "MAX_STORED_BYTES",
    "ApiError",
    "KubeEmulator",
    "ResourceType",
    "Store",
    "kube_emulator",
    "kube_emulator_fixture",
    "load_crd_documents",
    "types_from_crd",
]
