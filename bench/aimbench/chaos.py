"""Fault scenarios against the real operator on the local control plane.

Every scenario runs in its own namespace on one shared cluster:

1. apply N endpoints (revision 0) and start converging them;
2. inject the fault once a third of them have converged (or right away);
3. disturb: move half the endpoints to a new revision, delete a few, create a
   few (while the fault lasts where the fault allows writes);
4. wait until every endpoint is converged and Ready, then check the end state
   from a fresh LIST (:func:`~.verify.check_namespace`: nothing lost or stale,
   no missing, duplicated or orphaned child);
5. check that the controller went quiet: no reconcile errors and no writes
   other than leader-election renewals during a short window (client metrics
   and the API server's audit log of the operator's user).

A scenario passes only if all of that holds (and, where the scenario exists to
provoke something, e.g. a 410 Gone, if it was provoked).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import workload as wl
from .benchmark import SETTLE_SECONDS
from .cluster import OPERATOR_NAMESPACE, BenchCluster, dispose, gpu_inventory, new_cluster
from .kube import Credentials, Kube, collection_path, gather_limited, object_path
from .observer import Observer
from .operator import OperatorProcess
from .verify import Verdict, check_namespace

LEASE = "aim-controller.aim.engine.amd.com"
INSTANCE_LABEL = "app.kubernetes.io/instance"  # the endpoint's name, on its pods
INTRUDER = "chaos-intruder"
INTRUDER_ANNOTATION = "chaos.aim.engine.amd.com/intruder"
ALL_SCENARIOS = ("apiserver-restart", "operator-kill", "leader-kill", "conflicting-writes",
                 "node-delete", "compaction-410", "webhook-fault", "stalled-watch")
# How long an unreachable admission webhook refuses the endpoints' Deployments.
WEBHOOK_FAULT_SECONDS = 20.0
QUICK_SCENARIOS = ("apiserver-restart", "operator-kill")
# The stalled-watch operator drops a silent watch after this long (default 150 s):
# above the API server's one-minute bookmark interval, so a quiet but healthy watch
# is never taken for a stalled one. Its relay holds every connection it had for up
# to STALL_MAX_SECONDS.
STALL_TIMEOUT_SECONDS = 75.0
STALL_MAX_SECONDS = 300.0


@dataclass
class ChaosOptions:
    n: int = 300
    scenarios: list[str] = field(default_factory=lambda: list(ALL_SCENARIOS))
    outage_seconds: float = 20.0
    timeout: float = 600.0
    quiet_seconds: float = 10.0
    concurrency: int = 10
    operator_args: list[str] = field(default_factory=lambda: [
        "--kube-api-qps", "1000", "--kube-api-burst", "2000"])
    churn: int = 5  # endpoints deleted and created by each disturbance
    out: Path = Path("_out/chaos")
    keep_cluster: bool = False
    log: Callable[[str], None] = print


@dataclass
class ScenarioResult:
    name: str
    passed: bool
    summary: str
    seconds: float
    details: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        return (f"[{'PASS' if self.passed else 'FAIL'}] {self.name} "
                f"({self.seconds:.0f} s): {self.summary}")


@dataclass
class Run:
    """One scenario's workload: what exists and at which revision it should be."""

    namespace: str
    expected: dict[str, int]
    observer: Observer
    next_index: int
    applied_at: float = 0.0
    expired_before: int = 0  # "watch expired" lines in the operators' logs at the start


class Chaos:
    def __init__(self, opts: ChaosOptions) -> None:
        self.opts = opts
        self.cluster: BenchCluster | None = None
        self.kube: Kube | None = None
        self.operators: list[OperatorProcess] = []
        self._all_operators: list[OperatorProcess] = []
        self._draining: list[str] = []  # namespaces of failed scenarios being deleted
        self._runs: list[Run] = []  # finished scenarios, left in place
        self._op_seq = 0

    # -- setup -----------------------------------------------------------------------
    async def setup(self) -> None:
        log = self.opts.log
        log("starting a local control plane")
        self.cluster = await asyncio.to_thread(new_cluster, keep=self.opts.keep_cluster)
        # Finished scenarios stay (deleting 300 endpoints' worth of objects costs more
        # than keeping them, and later faults then hit them too): room for all of them,
        # and for losing a node.
        per = self.opts.n + self.opts.churn * 3
        inv = gpu_inventory(len(self.opts.scenarios) * per, headroom=1.05, spare_nodes=2)
        nodes = await asyncio.to_thread(self.cluster.add_gpu_nodes, inv, 300)
        log(f"{len(nodes)} simulated MI300X nodes Ready ({self.cluster.state_dir})")
        self.kube = Kube(Credentials.from_kubeconfig(self.cluster.kubeconfig), connections=60)
        await self.kube.__aenter__()
        await self.start_single()

    async def teardown(self) -> None:
        for op in self.operators:
            op.stop()
        if self.kube is not None:
            await self.kube.close()
        if self.cluster is not None:
            await asyncio.to_thread(dispose, self.cluster)

    @property
    def c(self) -> BenchCluster:
        assert self.cluster is not None
        return self.cluster

    @property
    def k(self) -> Kube:
        assert self.kube is not None
        return self.kube

    def new_operator(self, *, leader_elect: bool = False, kubeconfig: Path | None = None,
                     extra_args: Sequence[str] = ()) -> OperatorProcess:
        self._op_seq += 1
        ident = f"chaos-{self._op_seq}"
        op = OperatorProcess(kubeconfig or self.c.operator_kubeconfig,
                             self.opts.out / f"operator-{ident}.log", identity=ident,
                             leader_elect=leader_elect,
                             max_concurrent_reconciles=self.opts.concurrency,
                             extra_args=[*self.opts.operator_args, *extra_args])
        self._all_operators.append(op)
        return op

    async def start_single(self) -> OperatorProcess:
        for op in self.operators:
            op.stop()
        op = self.new_operator().start()
        self.operators = [op]
        await asyncio.to_thread(op.wait_ready, 180)
        return op

    # -- workload --------------------------------------------------------------------
    async def begin(self, name: str) -> Run:
        ns = f"chaos-{name}"
        await wl.create_namespace(self.k, ns)
        obs = Observer(self.k, ns)
        await obs.start()
        names = wl.names(self.opts.n)
        run = Run(ns, dict.fromkeys(names, 0), obs, self.opts.n,
                  expired_before=self.expired_watches())
        run.applied_at = time.monotonic()
        await wl.apply_all(self.k, [wl.endpoint(x, ns) for x in names], concurrency=40)
        return run

    async def until_fraction(self, run: Run, fraction: float, within: float = 300) -> int:
        """Waits until ``fraction`` of the endpoints converged; returns how many had."""
        want = max(1, int(len(run.expected) * fraction))
        await run.observer.wait(lambda: len(run.observer.converged) >= want, within)
        return len(run.observer.converged)

    async def disturb(self, run: Run, rev: int, *, every: int = 2) -> dict[str, int]:
        """Half (every ``every``-th) to ``rev``, ``churn`` deleted, ``churn`` created."""
        live = sorted(run.expected)
        moved = live[::every]
        gone = live[-self.opts.churn:] if self.opts.churn else []
        moved = [x for x in moved if x not in gone]
        await gather_limited((wl.patch_rev(self.k, run.namespace, x, rev) for x in moved), 20)
        for x in moved:
            run.expected[x] = rev
        for x in gone:
            await self.k.delete(object_path(wl.API_VERSION, "AIMEndpoint", x, run.namespace))
            run.expected.pop(x)
        new = [f"ep-{i:04d}" for i in range(run.next_index, run.next_index + self.opts.churn)]
        run.next_index += self.opts.churn
        await wl.apply_all(self.k, [wl.endpoint(x, run.namespace, rev=rev) for x in new])
        run.expected.update(dict.fromkeys(new, rev))
        return {"updated": len(moved), "deleted": len(gone), "created": len(new)}

    async def settle(self, run: Run, **verify_kw: Any) -> tuple[Verdict, dict[str, Any]]:
        """Waits for the end state, checks it, then checks the controller is quiet."""
        obs = run.observer
        names = set(run.expected)
        ok = await obs.wait(lambda: obs.all_ready(names) and set(obs.endpoints.objects) == names,
                            self.opts.timeout)
        info: dict[str, Any] = {"readyAfter": round(time.monotonic() - run.applied_at, 1),
                                "observerReady": ok, **obs.snapshot()}
        verdict = await _eventually_ok(self.k, run.namespace, 60 if ok else 5,
                                       expected=run.expected, **verify_kw)
        # Quiet: nothing but lease renewals, and no reconcile errors. GPU pods that
        # still come or go make the operator refresh AIMRecipe fit status, rightly, so
        # first wait for the pods of deleted endpoints to go.
        for ns in list(self._draining):  # their pods going would wake the operator too
            if await self.wait_namespace_gone(ns):
                self._draining.remove(ns)
        info["podsSettled"] = await self.pods_settled(run, within=180)
        info["settledAfter"] = round(await asyncio.to_thread(
            self.c.wait_operator_quiet, SETTLE_SECONDS, 120), 1)
        ops = [op for op in self.operators if op.running]
        m0 = [await asyncio.to_thread(op.metrics_or_none) for op in ops]
        w0 = time.time()
        await asyncio.sleep(self.opts.quiet_seconds)
        m1 = [await asyncio.to_thread(op.metrics_or_none) for op in ops]
        w1 = time.time()
        await asyncio.sleep(1.5)
        errors = writes = 0.0
        for a, b in zip(m0, m1, strict=True):
            if a is not None and b is not None:
                d = b.minus(a)
                errors += d.reconcile_errors()
                writes += d.writes()
        audit = self.c.operator_writes(w0, w1)
        info["quiet"] = {"reconcileErrors": errors, "clientWrites": writes,
                         "nonLeaseWrites": len(audit),
                         "writesByResource": _count((e.get("objectRef") or {}).get("resource")
                                                    for e in audit)}
        if errors:
            verdict.problems.append(f"noisy: {errors:.0f} reconcile errors in the quiet window")
        if audit:
            verdict.problems.append(f"noisy: {len(audit)} writes in the quiet window")
        info["operators"] = [op.identity for op in ops]
        info["expiredWatches"] = self.expired_watches() - run.expired_before
        return verdict, info

    async def pods_settled(self, run: Run, within: float) -> bool:
        """Waits until the namespace's pods are exactly one Running, undeleted pod per
        live endpoint."""
        deadline = time.monotonic() + within
        while True:
            with contextlib.suppress(Exception):
                pods, _ = await self.k.list(collection_path("v1", "Pod", run.namespace))
                owners = [(p["metadata"].get("labels") or {}).get(INSTANCE_LABEL) for p in pods
                          if not p["metadata"].get("deletionTimestamp")
                          and (p.get("status") or {}).get("phase") == "Running"]
                if len(pods) == len(owners) and sorted(owners) == sorted(run.expected):
                    return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(2)

    async def finish(self, run: Run) -> None:
        await run.observer.stop()
        self._runs.append(run)

    async def aftermath(self) -> ScenarioResult:
        """Every earlier scenario's namespace, re-checked after all the later faults."""
        start = time.monotonic()
        problems: list[str] = []
        counts = {"endpoints": 0, "ready": 0, "children": 0}
        for run in self._runs:
            v = await _eventually_ok(self.k, run.namespace, 60, expected=run.expected)
            problems += [f"{run.namespace}: {p}" for p in v.problems]
            for k in counts:
                counts[k] += v.counts.get(k, 0)
        verdict = Verdict(problems=problems, counts=counts)
        summary = (f"{counts['ready']}/{counts['endpoints']} Ready in {len(self._runs)} "
                   f"namespaces, {counts['children']} children; "
                   + ("ok" if verdict.ok else f"PROBLEMS: {verdict.summary(3)}"))
        return ScenarioResult("aftermath", verdict.ok, summary, time.monotonic() - start,
                              {"verdict": verdict.as_dict()})

    async def wait_namespace_gone(self, ns: str, within: float = 240) -> bool:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if await self.k.get_or_none(object_path("v1", "Namespace", ns)) is None:
                    return True
            await asyncio.sleep(2)
        return False

    # -- scenarios -------------------------------------------------------------------
    async def apiserver_restart(self) -> tuple[Verdict, dict[str, Any]]:
        run = await self.begin("apiserver-restart")
        at = await self.until_fraction(run, 1 / 3)
        self.opts.log(f"  stopping kube-apiserver for {self.opts.outage_seconds:.0f} s "
                      f"({at}/{self.opts.n} converged)")
        await asyncio.to_thread(self.c.restart_apiserver, self.opts.outage_seconds)
        wave = await self.disturb(run, 1)
        verdict, info = await self.settle(run)
        info |= {"faultAtConverged": at, "disturbance": wave}
        if not all(op.running for op in self.operators):
            verdict.problems.append("crash: the operator exited during the outage")
        await self.finish(run)
        return verdict, info

    async def operator_kill(self) -> tuple[Verdict, dict[str, Any]]:
        run = await self.begin("operator-kill")
        at = await self.until_fraction(run, 1 / 3)
        op = self.operators[0]
        code = op.kill(signal.SIGKILL)
        self.opts.log(f"  SIGKILLed the operator ({at}/{self.opts.n} converged, exit {code})")
        wave = await self.disturb(run, 1)  # while nobody reconciles
        await asyncio.sleep(2)
        await self.start_single()
        verdict, info = await self.settle(run)
        info |= {"faultAtConverged": at, "disturbance": wave, "exitCode": code}
        await self.finish(run)
        return verdict, info

    async def leader_kill(self) -> tuple[Verdict, dict[str, Any]]:
        for op in self.operators:
            op.stop()
        a = self.new_operator(leader_elect=True).start()
        b = self.new_operator(leader_elect=True).start()
        self.operators = [a, b]
        holder = await self._wait_holder({a.identity, b.identity}, 60)
        if holder is None:
            v = Verdict(problems=["leader: no replica acquired the lease"])
            return v, {}
        leader = a if holder == a.identity else b
        standby = b if leader is a else a
        await asyncio.to_thread(leader.wait_ready, 120)
        s0 = await asyncio.to_thread(standby.metrics_or_none)
        run = await self.begin("leader-kill")
        at = await self.until_fraction(run, 1 / 3)
        s1 = await asyncio.to_thread(standby.metrics_or_none)
        standby_writes = (s1.minus(s0).writes() if s0 and s1 else None)
        leader.kill(signal.SIGKILL)
        self.opts.log(f"  SIGKILLed leader {leader.identity} ({at}/{self.opts.n} converged)")
        wave = await self.disturb(run, 1)
        # The killed pod comes back (as a Deployment would restart it), under a new name.
        await asyncio.sleep(3)
        again = self.new_operator(leader_elect=True).start()
        self.operators = [standby, again]
        new_holder = await self._wait_holder({standby.identity, again.identity}, 90)
        verdict, info = await self.settle(run)
        info |= {"faultAtConverged": at, "disturbance": wave, "killedLeader": leader.identity,
                 "newLeader": new_holder, "standbyWritesWhileFollowing": standby_writes}
        if new_holder is None:
            verdict.problems.append("leader: nobody took over the lease")
        if standby_writes:
            # While the leader renews, a follower only reads the Lease.
            verdict.problems.append(f"leader: the follower wrote {standby_writes:.0f} times")
        await self.finish(run)
        await self.start_single()
        return verdict, info

    async def conflicting_writes(self) -> tuple[Verdict, dict[str, Any]]:
        run = await self.begin("conflicting-writes")
        names = set(run.expected)
        await run.observer.wait(lambda: run.observer.all_ready(names), self.opts.timeout)
        before = {"configmaps": await self._config_data(run.namespace),
                  "selectors": await self._selectors(run.namespace)}
        self.opts.log(f"  burst of conflicting writes by {INTRUDER!r} to {len(names)} endpoints'"
                      " Services, Deployments and ConfigMaps")
        burst = asyncio.ensure_future(gather_limited(
            (_outcome(self._intrude(run.namespace, x)) for x in sorted(names)), 20))
        wave = await self.disturb(run, 1)
        outcomes = await burst
        failed = [o for o in outcomes if isinstance(o, BaseException)]
        verdict, info = await self.settle(run)
        repaired = await self._check_repaired(run, before)
        verdict.problems.extend(repaired)
        info |= {"disturbance": wave, "intruderWrites": 3 * len(names) - len(failed),
                 "intruderFailures": len(failed)}
        await self.finish(run)
        return verdict, info

    async def webhook_fault(self) -> tuple[Verdict, dict[str, Any]]:
        """A validating webhook for Deployments whose service does not answer
        (failurePolicy Fail) while the endpoints converge and change: every Deployment
        write fails with 500 meanwhile; after it is removed, nothing is lost."""
        run = await self.begin("webhook-fault")
        await self.until_fraction(run, 0.3)
        hook = {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": f"chaos-unreachable-{run.namespace}"},
            "webhooks": [{
                "name": "unreachable.chaos.aim.engine.amd.com",
                "clientConfig": {"url": "https://127.0.0.1:1/validate"},
                "rules": [{"apiGroups": ["apps"], "apiVersions": ["v1"],
                           "operations": ["CREATE", "UPDATE"], "resources": ["deployments"]}],
                "namespaceSelector": {"matchLabels": {
                    "kubernetes.io/metadata.name": run.namespace}},
                "failurePolicy": "Fail", "sideEffects": "None",
                "admissionReviewVersions": ["v1"], "timeoutSeconds": 2,
            }],
        }
        self.opts.log(f"  Deployment writes refused by an unreachable webhook for "
                      f"{WEBHOOK_FAULT_SECONDS:.0f} s, while half the endpoints change")
        await self.k.apply(hook, INTRUDER)
        try:
            wave = await self.disturb(run, 1)
            await asyncio.sleep(WEBHOOK_FAULT_SECONDS)
            api_errors = await self._api_errors(run.namespace)
        finally:
            await self.k.delete(object_path(hook))
        verdict, info = await self.settle(run)
        if not api_errors:
            verdict.problems.append("webhook: no endpoint said Degraded ApiError")
        if await self._api_errors(run.namespace):
            verdict.problems.append("webhook: ApiError still shown after the fault")
        info |= {"disturbance": wave, "endpointsShowingApiError": api_errors}
        await self.finish(run)
        return verdict, info

    async def stalled_watch(self) -> tuple[Verdict, dict[str, Any]]:
        """The operator talks to the API server through a TCP relay. Once a third of the
        endpoints converged, the relay stops forwarding on every connection it has
        (watches and pooled requests) while keeping them open, and half the endpoints
        change. The changes must reach the operator through the watches it resumes
        after its stall timeout, while the old connections are still held open; the
        relay forwards again only after that (or after STALL_MAX_SECONDS)."""
        from tcprelay import Relay  # in hack/, on the path once .cluster is imported

        for op in self.operators:
            op.stop()
        server = yaml.safe_load(self.c.operator_kubeconfig.read_text())
        port = int(server["clusters"][0]["cluster"]["server"].rsplit(":", 1)[1])
        relay = Relay(port)
        await relay.start()
        server["clusters"][0]["cluster"]["server"] = relay.url
        kubeconfig = self.opts.out / "operator-via-relay.kubeconfig"
        kubeconfig.parent.mkdir(parents=True, exist_ok=True)
        kubeconfig.write_text(yaml.safe_dump(server, sort_keys=False))
        op = self.new_operator(kubeconfig=kubeconfig, extra_args=[
            "--watch-stall-timeout", f"{STALL_TIMEOUT_SECONDS:.0f}s"]).start()
        self.operators = [op]
        try:
            await asyncio.to_thread(op.wait_ready, 180)
            run = await self.begin("stalled-watch")
            at = await self.until_fraction(run, 1 / 3)
            before = await asyncio.to_thread(op.metrics_or_none)
            held = relay.pause()
            stalled_at = time.monotonic()
            self.opts.log(f"  relay holds {held} open connections silent ({at}/{self.opts.n} "
                          f"converged; operator's stall timeout {STALL_TIMEOUT_SECONDS:.0f} s)")
            wave = await self.disturb(run, 1)
            obs = run.observer
            during = await obs.wait(
                lambda: obs.all_converged(set(run.expected))
                and set(obs.endpoints.objects) == set(run.expected), STALL_MAX_SECONDS)
            converged_during = len(obs.converged & set(run.expected))
            stall_seconds = round(time.monotonic() - stalled_at, 1)
            after = await asyncio.to_thread(op.metrics_or_none)
            relay.resume()
            verdict, info = await self.settle(run)
        finally:
            op.stop()
            relay.resume()
            await relay.cut()
            self.operators = []
        stalls = (after.minus(before).value("reflector_stalled_watches_total")
                  if after is not None and before is not None else 0.0)
        if not stalls:
            verdict.problems.append("stall: no watch was dropped for silence")
        if not during:
            verdict.problems.append(
                f"stall: only {converged_during}/{len(run.expected)} endpoints converged "
                f"while the old connections were held ({stall_seconds} s)")
        info |= {"faultAtConverged": at, "disturbance": wave, "heldConnections": held,
                 "stalledWatches": stalls, "convergedDuringStall": converged_during,
                 "stallSeconds": stall_seconds}
        await self.finish(run)
        return verdict, info

    async def _api_errors(self, ns: str) -> int:
        items, _ = await self.k.list(collection_path(wl.API_VERSION, "AIMEndpoint", ns))
        return sum(1 for o in items for c in (o.get("status") or {}).get("conditions") or ()
                   if c.get("type") == "Degraded" and c.get("reason") == "ApiError")

    async def _intrude(self, ns: str, name: str) -> None:
        # Server-side apply with force by another manager: takes fields we own.
        await self.k.apply({"apiVersion": "v1", "kind": "Service",
                            "metadata": {"name": name, "namespace": ns,
                                         "annotations": {wl.REV: "intruder",
                                                         INTRUDER_ANNOTATION: "1"}},
                            "spec": {"selector": {"app.kubernetes.io/name": INTRUDER}}},
                           INTRUDER)
        await self.k.apply({"apiVersion": "apps/v1", "kind": "Deployment",
                            "metadata": {"name": name, "namespace": ns,
                                         "labels": {wl.MANAGED_BY[0]: INTRUDER}}}, INTRUDER)
        # A plain update (merge patch) by yet another manager.
        cm = await self.k.get(object_path("v1", "ConfigMap", f"{name}-config", ns))
        data = {k: "tampered" for k in (cm.get("data") or {})}
        await self.k.merge_patch(object_path("v1", "ConfigMap", f"{name}-config", ns),
                                 {"data": data}, manager=INTRUDER + "-update")

    async def _config_data(self, ns: str) -> dict[str, dict[str, str]]:
        items, _ = await self.k.list(collection_path("v1", "ConfigMap", ns),
                                     label_selector=f"{wl.MANAGED_BY[0]}={wl.MANAGED_BY[1]}")
        return {o["metadata"]["name"]: dict(o.get("data") or {}) for o in items}

    async def _selectors(self, ns: str) -> dict[str, dict[str, str]]:
        items, _ = await self.k.list(collection_path("v1", "Service", ns),
                                     label_selector=f"{wl.MANAGED_BY[0]}={wl.MANAGED_BY[1]}")
        return {o["metadata"]["name"]: dict((o.get("spec") or {}).get("selector") or {})
                for o in items}

    async def _check_repaired(self, run: Run, before: dict[str, Any]) -> list[str]:
        problems = []
        for name, sel in (await self._selectors(run.namespace)).items():
            if name in before["selectors"] and sel != before["selectors"][name]:
                problems.append(f"not-repaired: Service {name} selector {sel}")
        deps, _ = await self.k.list(collection_path("apps/v1", "Deployment", run.namespace))
        for d in deps:
            label = (d["metadata"].get("labels") or {}).get(wl.MANAGED_BY[0])
            if d["metadata"]["name"] in run.expected and label != wl.MANAGED_BY[1]:
                problems.append(f"not-repaired: Deployment {d['metadata']['name']} "
                                f"managed-by={label}")
        # The engine configuration depends only on the spec (unchanged at rev 0); the
        # selection record may legitimately be rewritten, but must not stay tampered.
        after = await self._config_data(run.namespace)
        for name, data in after.items():
            if any(v == "tampered" for v in data.values()):
                problems.append(f"not-repaired: ConfigMap {name} still tampered")
                continue
            old = before["configmaps"].get(name)
            if old is None or run.expected.get(name.removesuffix("-config")) != 0:
                continue
            keys = sorted(k for k in set(data) | set(old)
                          if k != "selection.json" and data.get(k) != old.get(k))
            if keys:
                diff = str({k: (old.get(k), data.get(k)) for k in keys})[:400]
                problems.append(f"not-repaired: ConfigMap {name} differs from before: {diff}")
        return problems

    async def node_delete(self) -> tuple[Verdict, dict[str, Any]]:
        run = await self.begin("node-delete")
        names = set(run.expected)
        await run.observer.wait(lambda: run.observer.all_ready(names), self.opts.timeout)
        pods, _ = await self.k.list(collection_path("v1", "Pod", run.namespace))
        by_node: dict[str, int] = {}
        for p in pods:
            node = (p.get("spec") or {}).get("nodeName")
            if node:
                by_node[node] = by_node.get(node, 0) + 1
        if not by_node:
            return Verdict(problems=["node-delete: no pod was scheduled"]), {}
        victim = max(by_node, key=lambda x: by_node[x])
        self.opts.log(f"  deleting node {victim} with {by_node[victim]} endpoint pods")
        await self.k.delete(object_path("v1", "Node", victim))
        wave = await self.disturb(run, 1)
        verdict, info = await self.settle(run, forbidden_nodes={victim})
        info |= {"deletedNode": victim, "podsOnNode": by_node[victim], "disturbance": wave}
        await self.finish(run)
        return verdict, info

    async def compaction_410(self) -> tuple[Verdict, dict[str, Any]]:
        log = self.opts.log
        log("  restarting kube-apiserver with --watch-cache=false")
        await asyncio.to_thread(self.c.restart_apiserver, 0.0, watch_cache=False)
        run = await self.begin("compaction-410")
        at = await self.until_fraction(run, 1 / 3)
        wave1 = await self.disturb(run, 1)
        rev = await asyncio.to_thread(self.c.compact_etcd)
        log(f"  compacted etcd at revision {rev}; dropping the watches "
            f"({at}/{self.opts.n} converged)")
        # Established watches survive a compaction; re-watches from before it get 410.
        await asyncio.to_thread(self.c.restart_apiserver, 1.0)
        wave2 = await self.disturb(run, 2, every=4)
        verdict, info = await self.settle(run)
        info |= {"faultAtConverged": at, "compactedAt": rev, "disturbance": [wave1, wave2]}
        if info["expiredWatches"] <= 0:
            verdict.problems.append("inconclusive: the operator never saw 410 Gone")
        await self.finish(run)
        return verdict, info

    # -- helpers ---------------------------------------------------------------------
    def expired_watches(self) -> int:
        """410 Gone answers the operators (all ever started) have logged so far."""
        return sum(op.log_count("watch expired") for op in self._all_operators)

    async def _holder(self) -> str | None:
        lease = await self.k.get_or_none(
            object_path("coordination.k8s.io/v1", "Lease", LEASE, OPERATOR_NAMESPACE))
        return ((lease or {}).get("spec") or {}).get("holderIdentity")

    async def _wait_holder(self, among: set[str], within: float) -> str | None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                h = await self._holder()
                if h in among:
                    return h
            await asyncio.sleep(0.5)
        return None

    async def run(self) -> list[ScenarioResult]:
        results: list[ScenarioResult] = []
        for name in self.opts.scenarios:
            self.opts.log(f"scenario {name}: {self.opts.n} endpoints")
            start = time.monotonic()
            try:
                if not any(op.running for op in self.operators):
                    await self.start_single()
                verdict, info = await SCENARIOS[name](self)
            except Exception as e:
                verdict, info = Verdict(problems=[f"error: {type(e).__name__}: {e}"]), {}
                ns = f"chaos-{name}"
                if ns not in self._draining:
                    with contextlib.suppress(Exception):
                        await self.k.delete(object_path("v1", "Namespace", ns))
                        self._draining.append(ns)
            seconds = time.monotonic() - start
            summary = _summary(verdict, info)
            res = ScenarioResult(name, verdict.ok, summary, seconds,
                                 {"verdict": verdict.as_dict(), **info})
            self.opts.log(res.line())
            results.append(res)
        if len(self._runs) > 1:
            res = await self.aftermath()
            self.opts.log(res.line())
            results.append(res)
            if name == "compaction-410" and name != self.opts.scenarios[-1]:
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(self.c.restart_apiserver, 0.0, watch_cache=True)
        return results


SCENARIOS: dict[str, Callable[[Chaos], Awaitable[tuple[Verdict, dict[str, Any]]]]] = {
    "apiserver-restart": Chaos.apiserver_restart,
    "operator-kill": Chaos.operator_kill,
    "leader-kill": Chaos.leader_kill,
    "conflicting-writes": Chaos.conflicting_writes,
    "node-delete": Chaos.node_delete,
    "compaction-410": Chaos.compaction_410,
    "webhook-fault": Chaos.webhook_fault,
    "stalled-watch": Chaos.stalled_watch,
}


async def _eventually_ok(kube: Kube, ns: str, within: float, **kw: Any) -> Verdict:
    deadline = time.monotonic() + within
    while True:
        try:
            v = await check_namespace(kube, ns, **kw)
        except Exception as e:
            v = Verdict(problems=[f"error: {type(e).__name__}: {e}"])
        if v.ok or time.monotonic() >= deadline:
            return v
        await asyncio.sleep(3)


async def _outcome(aw: Awaitable[None]) -> BaseException | None:
    try:
        await aw
    except Exception as e:
        return e
    return None


def _count(values: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[str(v)] = out.get(str(v), 0) + 1
    return out


def _summary(v: Verdict, info: dict[str, Any]) -> str:
    c = v.counts
    quiet = info.get("quiet") or {}
    parts = [f"{c.get('ready', 0)}/{c.get('endpoints', 0)} Ready",
             f"{c.get('children', 0)} children"]
    if "readyAfter" in info:
        parts.append(f"converged+Ready {info['readyAfter']} s after apply")
    if quiet:
        parts.append(f"quiet: {quiet.get('reconcileErrors', 0):.0f} errors, "
                     f"{quiet.get('nonLeaseWrites', 0)} writes")
    if info.get("expiredWatches"):
        parts.append(f"{info['expiredWatches']} watches expired (410)")
    if info.get("stalledWatches"):
        parts.append(f"{info['stalledWatches']:.0f} silent watches dropped, "
                     f"{info.get('convergedDuringStall')} converged during a "
                     f"{info.get('stallSeconds')} s stall")
    if info.get("newLeader"):
        parts.append(f"leader {info.get('killedLeader')} -> {info['newLeader']}")
    parts.append("ok" if v.ok else f"PROBLEMS: {v.summary(3)}")
    return "; ".join(parts)


async def run_chaos(opts: ChaosOptions) -> list[ScenarioResult]:
    unknown = [s for s in opts.scenarios if s not in SCENARIOS]
    if unknown:
        raise ValueError(f"unknown scenarios {unknown}; known: {list(SCENARIOS)}")
    ch = Chaos(opts)
    try:
        await ch.setup()
        return await ch.run()
    finally:
        await ch.teardown()

