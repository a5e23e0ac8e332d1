"""`invoke smoke`: GPU Jobs on every worker; pass only if each sees exactly its own GPUs.

Also checks that the GPU limit is enforced: a pod asking one GPU more than a worker has
must stay Pending. A CPU-only worker gets a Job without a GPU limit that must see no GPU,
and a pod asking for 1 GPU that must stay Pending. With time-slicing a worker offers its GPUs
× replicas: its Job asks for all of them, and two pods given a replica each may see the same
GPU (kindgpu.smoke_checks). A pod selecting by nvidia.com/gpu.product must land on a worker
with that product. Jobs are deleted afterwards; the verdict comes from kindgpu.payloads.judge.
"""

from __future__ import annotations

import time
import uuid as uuidlib
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from . import console, deviceplugin, gfd, images, names, nodes, payloads, record, sharing, smoke_checks
from .errors import KindgpuError, Problem, SpecError
from .kube import Kube
from .parallel import concurrently
from .payloads import judge, levels
from .plan import Plan
from .state import StateDir
from .wait import Seen, WaitFailed, WaitTimeout, wait_for

# The Kubernetes client is imported where used: listing the tasks must not pay for it.

NAMESPACE = "kindgpu-smoke"
SERVICE = "smoke"  # headless: collective pods find rank 0 at w0.smoke.<namespace>
RUN_LABEL = "kindgpu.dev/smoke-run"
WORKER_LABEL = "kindgpu.dev/worker"  # the worker a smoke pod is for: its gpu-worker number, or cpuN
PENDING_LABEL = "kindgpu.dev/expect-pending"  # pods that must never be scheduled
OVERASK_SECONDS = 60
VISIBILITY = levels.VISIBILITY.name  # what CPU-only workers and the checks' pods run, at every level


@dataclass
class Outcome:
    level: str
    ok: bool
    message: str
    workers: list = field(default_factory=list)  # dicts: node, expected, seen, ok, message, seconds
    limit: dict = field(default_factory=dict)  # the over-ask check
    seconds: float = 0.0
    cpu_workers: list = field(default_factory=list)  # dicts: node, seen, ok, message, gpuAsk (a limit dict)
    checks: list = field(default_factory=list)  # smoke_checks rows: check, name, subject, ok, message, nodes, uuids
    sharing: str = "not shared"
    fix: str = ""  # what to do about a pod that could not run

    def to_dict(self):
        return {"level": self.level, "ok": self.ok, "message": self.message, "workers": self.workers,
                "cpuWorkers": self.cpu_workers, "limitEnforced": self.limit, "checks": self.checks,
                "sharing": self.sharing, "seconds": round(self.seconds, 2), **({"fix": self.fix} if self.fix else {})}


def image_for(plan, level):
    """The level's image; for simulated GPUs their plugin's, whose fake nvidia-smi answers like the real one."""
    return levels.image(plan.spec, level, deviceplugin.image(plan) if plan.simulated else None)


def check_level(plan, level):
    """The level against the cluster (levels.problem): simulated GPUs run visibility only."""
    found = levels.problem(level, plan.simulated)
    if found:
        raise SpecError([Problem("--level", *found)], title="invalid task flags")


def job(run_id, level, image, worker, rank, gpu_counts, gpus=None, extra_env=None, time_slicing=None):
    """One Job pinned to one GPU worker, asking for its GPUs (or `gpus` of them).

    gpu_counts: every GPU worker's GPU count in rank order (the collective level numbers its ranks);
    extra_env: the spec's smoke.env, added after kindgpu's own variables; time_slicing: the
    cluster's (sharing.TimeSlicing): all its GPUs are then GPUs × replicas of its resource.
    """
    ts = time_slicing or sharing.TimeSlicing()
    count = ts.allocatable(len(worker.gpus)) if gpus is None else gpus
    uuids = [g.uuid for g in worker.gpus if g.uuid]  # none known on a cluster kindgpu did not make
    env = payloads.env(level, worker_name=worker.node, gpu_uuids=uuids, rank=rank,
                       world_size=len(gpu_counts), gpu_counts=gpu_counts,
                       master_addr=f"w0.{SERVICE}.{NAMESPACE}.svc.cluster.local")
    env.update(extra_env or {})
    name = f"smoke-{run_id}-w{worker.number}" + ("-overask" if gpus is not None else "")
    return pinned_job(run_id, name, level, image, worker.node, str(worker.number), env, count,
                      hostname=f"w{rank}", pending=gpus is not None, resource=ts.resource)


def cpu_key(position):
    """What names a CPU-only worker's smoke pods: cpu1, cpu2, ... (it has no gpu-worker number)."""
    return f"cpu{position}"


def cpu_jobs(run_id, image, worker, key, extra_env=None, resource=names.GPU_RESOURCE):
    """A CPU-only worker's two Jobs: the visibility payload with no GPU limit, which must see no
    GPU, and a pod asking for 1 GPU, which must stay Pending (the worker offers none)."""
    env = {**payloads.visibility_env(worker.node, expect_none=True), **(extra_env or {})}
    name = f"smoke-{run_id}-{key}"
    return [pinned_job(run_id, name, VISIBILITY, image, worker.node, key, env, None, hostname=key),
            pinned_job(run_id, f"{name}-gpuask", VISIBILITY, image, worker.node, key, env, 1,
                       hostname=key, pending=True, resource=resource)]


def pinned_job(run_id, name, level, image, node, worker_key, env, gpus, *, hostname, pending=False,
               resource=names.GPU_RESOURCE):
    """A Job whose one pod runs the level's payload on `node`; gpus=None sets no GPU limit."""
    volumes, mounts = payloads.pod_volumes(level)
    labels = {RUN_LABEL: run_id, "app.kubernetes.io/managed-by": "kindgpu"}
    pod_labels = {**labels, WORKER_LABEL: worker_key, **({PENDING_LABEL: "true"} if pending else {})}
    container = {
        "name": "payload",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": payloads.command(level),
        "env": [{"name": k, "value": v} for k, v in env.items()],
        "volumeMounts": [{"name": "payloads", "mountPath": payloads.MOUNT_DIR}, *mounts],
    }
    if gpus is not None:
        container["resources"] = {"limits": {resource: str(gpus)}}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "restartPolicy": "Never",
                    "hostname": hostname,
                    "subdomain": SERVICE,
                    "nodeSelector": {"kubernetes.io/hostname": node},
                    "tolerations": [{"key": names.GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}],
                    # Payloads never call the API server: no token or service variables to make per pod.
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "containers": [container],
                    "volumes": [{"name": "payloads", "configMap": {"name": f"smoke-{run_id}"}}, *volumes],
                },
            },
        },
    }


def check_jobs(run_id, image, check, resource, extra_env=None):
    """The Jobs of one smoke_checks.Check: the product check's pod placed by the product label
    alone, the shared check's pods pinned to its worker; 1 GPU each."""
    env = {**payloads.visibility_env(f"{check.kind}-check"), **(extra_env or {})}
    jobs = []
    for i in range(1, check.pods + 1):
        node = check.subject if check.kind == "shared" else None
        job = pinned_job(run_id, f"smoke-{run_id}-{check.key}-{i}", VISIBILITY, image, node, check.key, env, 1,
                         hostname=f"{check.key}-{i}", resource=resource)
        pod = job["spec"]["template"]
        pod["metadata"]["labels"][smoke_checks.CHECK_LABEL] = check.key
        if check.kind == "product":
            pod["spec"]["nodeSelector"] = {smoke_checks.PRODUCT_LABEL: check.subject}
        jobs.append(job)
    return jobs


def support_objects(run_id, level):
    """The payloads' ConfigMap; for the collective level, the Service its ranks meet through."""
    labels = {RUN_LABEL: run_id, "app.kubernetes.io/managed-by": "kindgpu"}
    configmap = {"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": f"smoke-{run_id}", "namespace": NAMESPACE, "labels": labels},
                 "data": payloads.configmap_data()}
    if not levels.get(level).rendezvous:
        return [configmap]
    return [
        configmap,
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": SERVICE, "namespace": NAMESPACE, "labels": labels},
         "spec": {"clusterIP": "None", "publishNotReadyAddresses": True,
                  "selector": {RUN_LABEL: run_id}, "ports": [{"name": "rdzv", "port": 29500}]}},
    ]


class Smoke:
    def __init__(self, kube: Kube, plan: Plan, level, progress=lambda text: None, timeout=300, *,
                 foreign=False, image=None):
        """foreign: a cluster kindgpu did not make (kindgpu.foreign): no images are loaded into
        its nodes, which pull them as the cluster is set up to. image: what every pod runs,
        instead of the level's image (invoke smoke --image)."""
        self.kube, self.plan, self.level, self.foreign, self.image = kube, plan, level, foreign, image
        self.progress, self.timeout = progress, timeout
        self.run_id = uuidlib.uuid4().hex[:6]
        self.workers = plan.workers
        # WorkerPlan.cpu_only is told by the GPUs, so older records (no cpuOnly) read the same.
        self.gpu_workers = list(plan.gpu_workers)
        self.cpu_workers = {cpu_key(i): w for i, w in enumerate((w for w in self.workers if w.cpu_only), 1)}
        self.ts = sharing.of(plan.spec)  # an older record has none: not shared

    def pods(self, selector):
        return self.kube.pods(NAMESPACE, selector)

    def create(self, obj):
        from kubernetes.utils import create_from_dict

        create_from_dict(self.kube.api_client, obj, namespace=NAMESPACE)

    def ensure_namespace(self):
        if self.kube.get("Namespace", NAMESPACE) is None:
            self.kube.core.create_namespace({"metadata": {"name": NAMESPACE,
                                                          "labels": {"app.kubernetes.io/managed-by": "kindgpu"}}})

    def run(self):
        start = time.monotonic()
        image = self.image or image_for(self.plan, self.level)
        # CPU-only workers run the visibility payload at every level, in its (small) image.
        cpu_image = self.image or image_for(self.plan, VISIBILITY)
        self.load_image(image, self.gpu_workers)
        self.load_image(cpu_image, self.cpu_workers.values())
        self.ensure_namespace()
        try:
            for obj in support_objects(self.run_id, self.level):
                self.replace_service(obj) if obj["kind"] == "Service" else self.create(obj)
            counts = [len(w.gpus) for w in self.gpu_workers]
            # Every worker's Job and the pods that must stay Pending start at once; the latter wait for nothing.
            extra_env = self.plan.spec["smoke"].get("env", {})
            jobs = [job(self.run_id, self.level, image, worker, rank, counts, extra_env=extra_env,
                        time_slicing=self.ts)
                    for rank, worker in enumerate(self.gpu_workers)]
            jobs += [j for key, w in self.cpu_workers.items()
                     for j in cpu_jobs(self.run_id, cpu_image, w, key, extra_env=extra_env, resource=self.ts.resource)]
            concurrently(self.create, [*jobs, self.overask_job(image)])
            logs, failure = self.wait_jobs()
            # The checks' pods start once the level's have ended: they ask for GPUs those hold, and a
            # pod the scheduler has found unschedulable can wait minutes before it is tried again (on
            # the H200, a check started beside the compute pod stayed Pending past smoke's timeout).
            # After a failure they are not run: the failure is the verdict.
            checks = [] if failure else self.checks()
            # They run the visibility payload, in its image, at every level.
            concurrently(self.create, [j for c in checks for j in check_jobs(self.run_id, cpu_image, c,
                                                                              self.ts.resource, extra_env)])
            limit, *asks = concurrently(lambda check: self.check_pending(*check), self.pending_checks())
            rows = concurrently(self.finish_check, checks)
        finally:
            self.cleanup()
        outcome = self.verdict(logs, failure, limit, dict(zip(self.cpu_workers, asks)), time.monotonic() - start,
                               rows)
        outcome.fix = self.failure_fix
        return outcome

    def checks(self):
        """smoke_checks' checks for this cluster: by product (when it sets the feature labels and
        records them), and with time-slicing, two pods sharing a worker's GPU."""
        gpu_workers = [(w.node, w.labels, [g.uuid for g in w.gpus]) for w in self.gpu_workers]
        found = smoke_checks.shared_check(gpu_workers, self.ts.replicas)
        if gfd.enabled(self.plan.spec):
            found = smoke_checks.product_checks(gpu_workers) + found
        return found

    def finish_check(self, check):
        """Wait for a check's pods to end, then judge them (smoke_checks.verdict)."""
        selector = f"{RUN_LABEL}={self.run_id},{smoke_checks.CHECK_LABEL}={check.key}"

        def probe():
            pods = self.pods(selector)
            ended = [p for p in pods if p.status.phase in ("Succeeded", "Failed")]
            return Seen(done=len(ended) == check.pods, last=f"{len(ended)}/{check.pods} ended")

        try:
            wait_for(probe, what=f"the pods of smoke check {check.name}", timeout=self.timeout, interval=0.5,
                     progress=self.progress)
        except (WaitFailed, WaitTimeout):
            pass  # the verdict says what is missing
        pods = self.pods(selector)
        logs = concurrently(lambda p: self.read_log(p) if p.status.phase in ("Succeeded", "Failed") else None, pods)
        return smoke_checks.verdict(check, [(p.spec.node_name, p.status.phase, log) for p, log in zip(pods, logs)])

    def load_image(self, image, workers):
        """An image the host's Docker has goes into the workers that lack it: no registry needed."""
        wanted = {w.node for w in workers}
        if not wanted or self.foreign:
            return
        client = nodes.docker_client()
        found = [n for n in nodes.cluster_nodes(client, self.plan.name) if n.name in wanted]
        images.preload(client, found, image, self.progress)

    def replace_service(self, obj):
        self.kube.delete("Service", SERVICE, NAMESPACE)
        self.create(obj)

    def wait_jobs(self):
        """Logs of every worker's pod; fail fast with a log tail when one fails."""
        selector = f"{RUN_LABEL}={self.run_id},{WORKER_LABEL},!{PENDING_LABEL},!{smoke_checks.CHECK_LABEL}"
        expected = len(self.workers)

        def probe():
            pods = self.pods(selector)
            failed = [p for p in pods if p.status.phase == "Failed"]
            if failed:
                return Seen(failed=f"pod {failed[0].metadata.name} failed:\n{self.log_tail(failed[0])}")
            cannot_pull, fix = image_pull_failure(pods)
            if cannot_pull:  # the image is in no node and cannot be pulled: waiting longer changes nothing
                return Seen(failed=cannot_pull, fix=fix)
            done = [p for p in pods if p.status.phase == "Succeeded"]
            waiting = {p.metadata.name: waiting_reason(p) for p in pods if p.status.phase != "Succeeded"}
            return Seen(done=len(done) == expected,
                        last=f"{len(done)}/{expected} done" + (f"; waiting: {waiting}" if waiting else ""))

        failure, self.failure_fix = "", ""
        try:
            wait_for(probe, what=f"the {self.level} smoke pods", timeout=self.timeout, interval=0.5,
                     progress=self.progress,
                     hint="`kubectl -n kindgpu-smoke describe pods` shows why a pod does not start")
        except (WaitFailed, WaitTimeout) as err:
            failure, self.failure_fix = str(err), err.fix or ""
        pods = self.pods(selector)
        node_names = [pod.spec.node_name or pod.spec.node_selector.get("kubernetes.io/hostname") for pod in pods]
        return dict(zip(node_names, concurrently(self.read_log, pods))), failure

    def read_log(self, pod):
        from kubernetes.client.exceptions import ApiException

        try:
            return self.kube.pod_log(pod.metadata.name, NAMESPACE)
        except ApiException:
            return None

    def log_tail(self, pod, lines=20):
        text = self.read_log(pod) or "(no log)"
        return "\n".join(f"  | {line}" for line in text.splitlines()[-lines:])

    def overask_worker(self):
        """The worker offering the most, and one GPU more than it offers (× replicas when shared)."""
        worker = max(self.gpu_workers, key=lambda w: len(w.gpus))
        return worker, self.ts.allocatable(len(worker.gpus)) + 1

    def overask_job(self, image):
        worker, asked = self.overask_worker()
        return job(self.run_id, VISIBILITY, image, worker, 0, [asked], gpus=asked,
                   extra_env=self.plan.spec["smoke"].get("env", {}), time_slicing=self.ts)

    def pending_checks(self):
        """(worker key, node, GPUs asked, GPUs it has): the over-ask pod first, then each CPU-only worker's."""
        worker, asked = self.overask_worker()
        return [(str(worker.number), worker.node, asked, asked - 1),
                *((key, w.node, 1, 0) for key, w in self.cpu_workers.items())]

    def check_pending(self, key, node, asked, has):
        """A pod asking `asked` GPUs of a worker that has fewer must stay Pending."""
        selector = f"{RUN_LABEL}={self.run_id},{WORKER_LABEL}={key},{PENDING_LABEL}"

        def probe():
            pods = self.pods(selector)
            if not pods:
                return Seen(last="no pod yet")
            pod = pods[0]
            if pod.spec.node_name or pod.status.phase != "Pending":
                return Seen(failed=f"a pod asking {asked} GPU(s) was scheduled on {pod.spec.node_name}, "
                                   f"which has {has}: the GPU limit is not enforced")
            cond = next((c for c in pod.status.conditions or [] if c.type == "PodScheduled"), None)
            unschedulable = cond is not None and cond.reason == "Unschedulable"
            return Seen(done=unschedulable, last=cond.message if cond else "Pending, not yet considered")

        try:
            seen = wait_for(probe, what=f"the pod asking {asked} GPU(s) of {node} to be refused",
                            timeout=OVERASK_SECONDS, interval=0.5, progress=self.progress)
            ok = self.ts.resource in (seen.last or "")
            return {"ok": ok, "node": node, "asked": asked,
                    "message": f"stays Pending: {seen.last}" if ok else f"Pending for another reason: {seen.last}"}
        except (WaitFailed, WaitTimeout) as err:
            return {"ok": False, "node": node, "asked": asked, "message": str(err)}

    def cleanup(self):
        selector = f"{RUN_LABEL}={self.run_id}"
        self.kube.batch.delete_collection_namespaced_job(NAMESPACE, label_selector=selector,
                                                         propagation_policy="Background")
        self.kube.core.delete_collection_namespaced_config_map(NAMESPACE, label_selector=selector)

    def verdict(self, logs, failure, limit, asks, seconds, checks=()):
        """asks: CPU-only worker key -> the check of its pod asking for 1 GPU; checks: smoke_checks rows."""
        # Where the UUIDs are not known (a cluster kindgpu did not make), the node's GPU count is.
        assignments = {w.node: [g.uuid for g in w.gpus] if all(g.uuid for g in w.gpus) else len(w.gpus)
                       for w in self.gpu_workers}
        cpu_nodes = [w.node for w in self.cpu_workers.values()]
        cluster = judge.judge_cluster(self.level, logs, assignments, cpu_only=cpu_nodes)
        rows = []
        for w in self.gpu_workers:
            v = cluster.workers[w.node]
            result, _ = judge.parse_result(logs.get(w.node) or "")
            expected = assignments[w.node]
            rows.append({"node": w.node, "worker": w.number,
                         "expected": expected if isinstance(expected, list) else [],
                         "expectedCount": len(w.gpus),
                         "seen": (result or {}).get("uuids") or [g.get("uuid") for g in (result or {}).get("gpus", [])
                                                                 if isinstance(g, dict)],
                         "ok": v.ok, "message": v.message})
        cpu_rows = []
        for key, w in self.cpu_workers.items():
            v = cluster.workers[w.node]
            cpu_rows.append({"node": w.node, "expected": [], "seen": v.details.get("uuids", []),
                             "ok": v.ok, "message": v.message, "gpuAsk": asks[key]})
        ok = (cluster.ok and limit.get("ok", False) and all(a.get("ok") for a in asks.values()) and not failure
              and all(c["ok"] for c in checks))
        message = failure or cluster.message
        for check in checks:
            # A shared GPU seen by two pods is no failure: the verdict says so.
            if not check["ok"] or check["check"] == "shared":
                message += f" | {check['message']}"
        if not limit.get("ok"):
            message += f" | limit: {limit.get('message')}"
        for row in cpu_rows:
            if not row["gpuAsk"].get("ok"):
                message += f" | GPU asked of CPU-only {row['node']}: {row['gpuAsk'].get('message')}"
        return Outcome(self.level, ok, message, rows, limit, seconds, cpu_rows, list(checks),
                       sharing.describe(self.ts))


def image_pull_failure(pods):
    """(what, fix) for the first pod whose image could not be pulled, after retries; ("", "") if none."""
    for pod in pods:
        for cs in pod.status.container_statuses or []:
            if cs.state.waiting and cs.state.waiting.reason == "ImagePullBackOff":
                return (f"pod {pod.metadata.name} on {pod.spec.node_name} cannot get image {cs.image}: it is in "
                        f"no node and could not be pulled ({cs.state.waiting.message or 'ImagePullBackOff'})",
                        f"put it into the host's Docker (`docker pull {cs.image}`, or `docker load -i` on a host "
                        "without a registry), then `invoke smoke` loads it into the nodes; or point the spec's "
                        "smoke.cudaImage / smoke.pytorchImage at an image you have")
    return "", ""


def waiting_reason(pod):
    for cs in pod.status.container_statuses or []:
        if cs.state.waiting:
            return cs.state.waiting.reason
    cond = next((c for c in pod.status.conditions or [] if c.type == "PodScheduled" and c.status == "False"), None)
    return cond.reason if cond else pod.status.phase


def junit_xml(outcome, cluster):
    """A JUnit report: one test case per worker, plus the limit check."""
    cases = [(f"{outcome.level}[{w['node']}]", w["ok"], w["message"]) for w in outcome.workers]
    cases.append(("gpu-limit-enforced", outcome.limit.get("ok", False), outcome.limit.get("message", "")))
    for w in outcome.cpu_workers:
        cases.append((f"cpu-only-sees-no-gpu[{w['node']}]", w["ok"], w["message"]))
        cases.append((f"cpu-only-gpu-ask-pending[{w['node']}]", w["gpuAsk"].get("ok", False),
                      w["gpuAsk"].get("message", "")))
    cases += [(c["name"], c["ok"], c["message"]) for c in outcome.checks]
    suite = ET.Element("testsuite", name=f"kindgpu-smoke-{cluster}", tests=str(len(cases)),
                       failures=str(sum(not ok for _, ok, _ in cases)), time=f"{outcome.seconds:.2f}")
    for name, ok, message in cases:
        case = ET.SubElement(suite, "testcase", classname=f"kindgpu.smoke.{outcome.level}", name=name)
        if not ok:
            ET.SubElement(case, "failure", message=message[:500]).text = message
    return ET.tostring(suite, encoding="unicode", xml_declaration=True)


def show(outcome, cluster, as_json):
    if as_json:
        console.print_json({"cluster": cluster, **outcome.to_dict()})
        return
    console.table(f"Smoke ({outcome.level}) on {cluster}: {'PASS' if outcome.ok else 'FAIL'}",
                  ["worker", "node", "expected GPUs", "seen GPUs", "result"],
                  [(w["worker"], w["node"], "\n".join(w["expected"]) or f"{w['expectedCount']} (as the node offers)",
                    "\n".join(u for u in w["seen"] if u),
                    "pass" if w["ok"] else w["message"]) for w in outcome.workers]
                  + [("cpu-only", w["node"], "(none)", "\n".join(w["seen"]) or "(none)",
                      "pass" if w["ok"] else w["message"]) for w in outcome.cpu_workers])
    print(f"GPU limit: {'enforced' if outcome.limit.get('ok') else 'NOT enforced'} "
          f"({outcome.limit.get('message', '')})")
    for w in outcome.cpu_workers:
        ask = w["gpuAsk"]
        print(f"GPU asked of CPU-only {w['node']}: {'Pending' if ask.get('ok') else 'NOT refused'} "
              f"({ask.get('message', '')})")
    if outcome.sharing != "not shared":
        print(f"GPU sharing: {outcome.sharing}")
    for c in outcome.checks:
        print(f"{c['name']}: {'pass' if c['ok'] else 'FAIL'} ({c['message']})")
    if not outcome.ok:
        print(outcome.message)


def smoke(name, level, reporter, *, junit=None, as_json=False, timeout=300, image=None):
    nodes.docker_client()  # no Docker: say so, not what kind says
    kube = Kube.for_kind_cluster(name)
    plan = record.require(kube, name)
    check_level(plan, level)
    return run_and_report(kube, plan, level, reporter, junit or StateDir.of(name).junit(level),
                          as_json=as_json, timeout=timeout, image=image)


def run_and_report(kube, plan, level, reporter, junit, *, as_json=False, timeout=300, foreign=False, image=None):
    """Run the level's Jobs on the plan's workers, write the JUnit report, show the outcome."""
    name = plan.name
    with reporter.step("smoke", f"{level} Jobs on {len(plan.workers)} worker(s)") as progress:
        outcome = Smoke(kube, plan, level, progress, timeout, foreign=foreign, image=image).run()
    path = junit
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(junit_xml(outcome, name))
    show(outcome, name, as_json)
    if not as_json:
        print(f"JUnit report: {path}")
    if not outcome.ok:
        raise KindgpuError(f"smoke failed: {outcome.message}", outcome.fix or None)
    return outcome
