"""Why an endpoint's pods cannot serve, read from what the pod cache and the Deployment
already hold (no extra reads): the kubelet's container states, and the ReplicaSet's
``FailedCreate`` that the Deployment controller copies into the Deployment's status.

Each failure is one (reason, message) for the endpoint's ``Degraded`` condition. The
message is built to stay the same while the failure does, so that a status write
(and its Warning Event) happens per change of failure, not per kubelet retry:

* ``ErrImagePull`` and ``ImagePullBackOff`` alternate while the kubelet retries; both
  are ``ImagePullBackOff`` here, with the pull error itself (the back-off message
  repeats it after ``Back-off pulling image "...": ErrImagePull: ``);
* a crashing container goes waiting (``CrashLoopBackOff``, with a back-off that grows)
  -> running -> terminated and round again; all of it is ``CrashLoopBackOff`` (or
  ``OOMKilled`` when the kernel killed it), described by its last termination
  (exit code, reason, message), never by the back-off wording or the restart count.

A ready container is never failing: a container that crashed once, restarted and is
serving again does not keep its endpoint degraded.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CONFIG_ERROR",
    "CRASH_LOOP",
    "CREATE_ERROR",
    "FAILED_CREATE",
    "IMAGE_PULL",
    "INVALID_IMAGE",
    "OOM_KILLED",
    "WORKLOAD_FAILURES",
    "PodFailure",
    "container_failure",
    "first_failure",
    "is_failing",
    "is_ready",
    "memory_limits",
    "replica_failure",
    "reported_on",
]

CRASH_LOOP = "CrashLoopBackOff"
OOM_KILLED = "OOMKilled"
IMAGE_PULL = "ImagePullBackOff"
INVALID_IMAGE = "InvalidImageName"
CONFIG_ERROR = "CreateContainerConfigError"
CREATE_ERROR = "CreateContainerError"
FAILED_CREATE = "FailedCreate"

# Most specific first: when several pods fail differently, the first one is reported.
_ORDER = (INVALID_IMAGE, IMAGE_PULL, CONFIG_ERROR, CREATE_ERROR, OOM_KILLED, CRASH_LOOP)
WORKLOAD_FAILURES = frozenset((*_ORDER, FAILED_CREATE))
"""Every Degraded reason this module produces."""

# The kubelet's waiting reasons of one failing image pull (the last two are the CRI's
# specific pull errors, which alternate with ImagePullBackOff just the same).
_PULL_REASONS = frozenset(
    ("ErrImagePull", "ImagePullBackOff", "RegistryUnavailable", "SignatureValidationFailed"))
_BACK_OFF_PULL = re.compile(r'^Back-off pulling image "[^"]*"(?:: [A-Za-z]+: (?P<err>.*))?$',
                            re.DOTALL)
_MAX_DETAIL = 1000


@dataclass(frozen=True)
class PodFailure:
    """One container of one pod that cannot serve.

    Invariant: ``reason`` is one of :data:`WORKLOAD_FAILURES` except FailedCreate;
    ``message`` names the pod and the container and stays the same while the
    failure does (see the module docstring).
    """

    reason: str
    message: str
    pod: str
    container: str


def _clip(text: str) -> str:
    text = text.strip()
    # The end of a termination message (a log tail) is the part that says why.
    return text if len(text) <= _MAX_DETAIL else "..." + text[-_MAX_DETAIL:]


def _pull_error(message: str) -> str:
    m = _BACK_OFF_PULL.match(message.strip())
    if m is not None and m.group("err"):
        return m.group("err")
    return message


def _termination(term: Mapping[str, Any]) -> str:
    code = term.get("exitCode")
    reason = term.get("reason") or "Error"
    detail = _clip(str(term.get("message") or ""))
    return f"exit code {code} ({reason})" + (f": {detail}" if detail else "")


def container_failure(
    status: Mapping[str, Any], pod: str, memory_limit: str | None = None
) -> tuple[str, str] | None:
    """(reason, message) of one container status (``status.containerStatuses[]`` or
    ``initContainerStatuses[]``) that says the container cannot serve, or None.

    ``memory_limit``: the container's memory limit, named in an OOMKilled message.
    """
    if status.get("ready"):
        return None
    name = str(status.get("name") or "")
    who = f"container {name} of pod {pod}"
    state = status.get("state") or {}
    waiting = state.get("waiting") or {}
    why = waiting.get("reason")
    said = _clip(str(waiting.get("message") or ""))
    if why in _PULL_REASONS:
        return IMAGE_PULL, f"{who} cannot pull its image: {_pull_error(said) or why}"
    if why == INVALID_IMAGE:
        return INVALID_IMAGE, f"{who} has an invalid image name: {said or why}"
    if why == CONFIG_ERROR:
        return CONFIG_ERROR, f"{who} cannot be configured: {said or why}"
    if why == CREATE_ERROR:
        return CREATE_ERROR, f"{who} cannot be created: {said or why}"
    # A crash: waiting to be restarted, restarted and not ready yet, or just terminated.
    term = state.get("terminated") or (status.get("lastState") or {}).get("terminated")
    restarted = int(status.get("restartCount") or 0) > 0
    if why not in (CRASH_LOOP, "RunContainerError") and not (
            term and (restarted or state.get("terminated"))):
        return None
    if term and term.get("reason") == OOM_KILLED:
        limit = f" of {memory_limit}" if memory_limit else ""
        return OOM_KILLED, (f"{who} was killed for using more memory than its limit{limit} "
                            f"(OOMKilled, exit code {term.get('exitCode')}); "
                            "raise spec.resources.memory")
    if term:
        return CRASH_LOOP, f"{who} keeps exiting and is restarted with back-off: last " \
            f"{_termination(term)}"
    return CRASH_LOOP, f"{who} keeps exiting and is restarted with back-off"


def _pod_failures(
    pod: Mapping[str, Any], limits: Mapping[str, str]
) -> Iterable[PodFailure]:
    name = str((pod.get("metadata") or {}).get("name") or "")
    status = pod.get("status") or {}
    for key in ("initContainerStatuses", "containerStatuses"):
        for cs in status.get(key) or ():
            found = container_failure(cs, name, limits.get(str(cs.get("name"))))
            if found is not None:
                yield PodFailure(found[0], found[1], name, str(cs.get("name") or ""))


def first_failure(
    pods: Iterable[Mapping[str, Any]], limits: Mapping[str, str] | None = None
) -> PodFailure | None:
    """The failure to report among ``pods`` (the caller's choice of which pods count):
    the most specific reason first, then by pod and container name, so the same pods
    always give the same answer. ``limits``: memory limit by container name."""
    found = [f for pod in pods for f in _pod_failures(pod, limits or {})]
    if not found:
        return None
    return min(found, key=lambda f: (_ORDER.index(f.reason), f.pod, f.container))


def memory_limits(template: Mapping[str, Any] | None) -> dict[str, str]:
    """Memory limit by container name of a pod template (the Deployment's)."""
    spec = (template or {}).get("spec") or {}
    out: dict[str, str] = {}
    for key in ("initContainers", "containers"):
        for c in spec.get(key) or ():
            limit = ((c.get("resources") or {}).get("limits") or {}).get("memory")
            if limit is not None:
                out[str(c.get("name"))] = str(limit)
    return out


def replica_failure(deployment: Mapping[str, Any] | None) -> tuple[str, str] | None:
    """(FailedCreate, message) when the Deployment's ReplicaSet cannot create pods (a
    ResourceQuota, Pod Security admission, a missing ServiceAccount, a webhook): the
    Deployment controller copies the ReplicaSet's ``ReplicaFailure`` condition."""
    for c in ((deployment or {}).get("status") or {}).get("conditions") or ():
        if c.get("type") == "ReplicaFailure" and c.get("status") == "True":
            detail = _clip(str(c.get("message") or c.get("reason") or "FailedCreate"))
            return FAILED_CREATE, f"the ReplicaSet cannot create pods: {detail}"
    return None


def is_ready(pod: Mapping[str, Any]) -> bool:
    """The pod's Ready condition is True and it is not being deleted."""
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or ())


def is_failing(pod: Mapping[str, Any]) -> bool:
    """Whether any container of the pod reports a failure."""
    return next(iter(_pod_failures(pod, {})), None) is not None


def reported_on(pod: Mapping[str, Any]) -> bool:
    """Whether the endpoint's status says something about this pod's state: it is Ready
    (Available) or failing (Degraded). A change is seen when the old or the new pod is
    so; a starting pod's progress (created, bound, container creating) is not."""
    return is_ready(pod) or is_failing(pod)
