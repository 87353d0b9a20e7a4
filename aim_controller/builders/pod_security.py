"""The security settings of the engine pods: hardened by default, so the pods are
admitted in a namespace that enforces the ``restricted`` Pod Security Standard
(https://kubernetes.io/docs/concepts/security/pod-security-standards/).

Pod ``securityContext`` (:func:`pod_security_context`): each field of
``spec.security.podSecurityContext`` that is set wins; the unset ones default to

* ``seccompProfile: RuntimeDefault``. The ROCm container docs call
  ``seccomp=unconfined`` optional, for NUMA-aware memory placement in HPC setups
  (the runtime's mbind/set_mempolicy calls are refused under the container runtimes'
  default profiles without CAP_SYS_NICE, and the allocation proceeds without the
  placement): https://rocm.docs.amd.com/projects/install-on-linux/en/latest/how-to/docker.html.
  ``seccompProfile: {type: Unconfined}`` opts in; the ``baseline`` and ``restricted``
  levels reject it.
* ``runAsNonRoot: true`` with ``runAsUser``/``runAsGroup`` :data:`DEFAULT_RUN_AS`,
  unless the spec asks for root (``runAsUser: 0``, or ``runAsNonRoot: false``):
  then neither is set and the image's user runs. The engine images (rocm/vllm,
  sglang) run as root by default, and the kubelet refuses ``runAsNonRoot`` for a
  root image unless ``runAsUser`` names another user; the uid is the operator
  image's (the AIMCache Jobs run as it), so files they write are the engine's too.
* ``fsGroup`` the run-as group (the own cache PVC is written by the engine) with
  ``fsGroupChangePolicy: OnRootMismatch``: a volume of model weights is not chowned
  again at every pod start.
* ``supplementalGroups`` :data:`ROCM_GROUPS` when the spec lists none: /dev/kfd and
  /dev/dri/renderD* are ``crw-rw----`` root:render (video on older hosts), and the
  device plugin passes them in with the host's owner and mode, so a non-root engine
  needs the host's group ids. video is 44 on Debian/Ubuntu; render has no fixed id
  (109 on stock Ubuntu 22.04/24.04 ROCm hosts): where ``getent group render`` on the
  nodes says otherwise, list the groups in the spec. AMD: the ROCT thunk README
  ("Users of Ubuntu 20.04 will need to add the user to the new render group",
  https://github.com/ROCm/ROCT-Thunk-Interface) and the ROCm docker image's note to
  add the host's render gid (https://github.com/ROCm/ROCm-docker/issues/90).

Container ``securityContext`` (:func:`container_security_context`): no privilege
escalation, every capability dropped (restricted allows only NET_BIND_SERVICE; the
engine listens on 8000 and needs none).

Home: a non-root user the image does not know gets ``HOME=/``, which it cannot write
(vLLM's, Triton's and the Hugging Face caches live under it), so ``HOME`` points at an
emptyDir (:func:`home_volume`) whatever the user.
"""

from __future__ import annotations

from typing import Any

from aim_controller.api.v1alpha1 import AIMEndpoint, AIMEndpointSpec

__all__ = [
    "DEFAULT_RUN_AS",
    "HOME_PATH",
    "HOME_VOLUME",
    "RENDER_GID",
    "RESTRICTED_LABEL",
    "ROCM_GROUPS",
    "VIDEO_GID",
    "admission_warning",
    "container_security_context",
    "home_volume",
    "pod_security_context",
    "runs_as_root",
]

DEFAULT_RUN_AS = 65532  # the operator image's user (Dockerfile), the AIMCache Jobs' too
VIDEO_GID = 44  # Debian/Ubuntu base-passwd's fixed id
RENDER_GID = 109  # dynamic; stock Ubuntu 22.04/24.04 (see the module docstring)
ROCM_GROUPS: tuple[int, ...] = (VIDEO_GID, RENDER_GID)
HOME_VOLUME = "home"
HOME_PATH = "/home/aim"
RESTRICTED_LABEL = "pod-security.kubernetes.io/enforce=restricted"


def runs_as_root(spec: AIMEndpointSpec) -> bool:
    """Whether the spec asks for root: ``runAsUser: 0`` or ``runAsNonRoot: false``."""
    psc = spec.security.pod_security_context
    return psc is not None and (psc.run_as_user == 0 or psc.run_as_non_root is False)


def pod_security_context(endpoint: AIMEndpoint) -> dict[str, Any]:
    """The pod ``securityContext`` (see the module docstring), keys sorted."""
    spec = endpoint.spec
    psc = spec.security.pod_security_context
    given: dict[str, Any] = (
        psc.model_dump(mode="json", by_alias=True, exclude_none=True) if psc else {})
    if not given.get("supplementalGroups"):
        given.pop("supplementalGroups", None)
    out: dict[str, Any] = {"seccompProfile": {"type": "RuntimeDefault"},
                           "supplementalGroups": list(ROCM_GROUPS)}
    if not runs_as_root(spec):
        out["runAsNonRoot"] = True
        if "runAsUser" not in given:
            out["runAsUser"] = DEFAULT_RUN_AS
            out["runAsGroup"] = given.get("runAsGroup", DEFAULT_RUN_AS)
        group = given.get("runAsGroup", out.get("runAsGroup"))
        if group is not None:
            out["fsGroup"] = group
    out |= given
    if "fsGroup" in out:
        out.setdefault("fsGroupChangePolicy", "OnRootMismatch")
    return dict(sorted(out.items()))


def container_security_context() -> dict[str, Any]:
    """The engine container's ``securityContext``."""
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def home_volume() -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """(volume, mount, env var) of the writable ``HOME``."""
    return ({"name": HOME_VOLUME, "emptyDir": {}},
            {"name": HOME_VOLUME, "mountPath": HOME_PATH},
            {"name": "HOME", "value": HOME_PATH})


def admission_warning(spec: AIMEndpointSpec) -> str | None:
    """Why Pod Security admission would refuse the pods in a namespace that enforces
    ``restricted`` (or ``baseline``), or None: said as a Warning Event and in the
    ResourcesReady message. The operator does not read namespaces; in such a
    namespace the ReplicaSet's FailedCreate then shows as Degraded."""
    psc = spec.security.pod_security_context
    if psc is None:
        return None
    seccomp = psc.seccomp_profile.type if psc.seccomp_profile is not None else None
    if seccomp == "Unconfined":
        return ("security.podSecurityContext.seccompProfile is Unconfined: the pods will not"
                " be admitted in a namespace that enforces the baseline or restricted Pod"
                " Security Standard (pod-security.kubernetes.io/enforce)")
    if runs_as_root(spec):
        why = ("asks for root (runAsUser 0)" if psc.run_as_user == 0
               else "allows root (runAsNonRoot false)")
        return (f"security.podSecurityContext {why}: the pods will not be"
                f" admitted in a namespace that enforces the restricted Pod Security"
                f" Standard ({RESTRICTED_LABEL})")
    return None
