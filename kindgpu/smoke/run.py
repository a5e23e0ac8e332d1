"""The smoke run against the cluster: load the images, create the objects (smoke.jobs), wait for
the pods, run the checks, read the logs, clean up; then the verdict (smoke.verdict)."""

from __future__ import annotations

import time
import uuid as uuidlib

from .. import images, names, nodes, pods as pod_state, sharing
from ..kube import Kube
from ..parallel import concurrently
from ..plan import Plan
from ..wait import Seen, WaitFailed, WaitTimeout, wait_for
from . import checks as smoke_checks
from .jobs import (
    NAMESPACE,
    PENDING_LABEL,
    RUN_LABEL,
    SERVICE,
    VISIBILITY,
    WORKER_LABEL,
    check_claims,
    check_jobs,
    claim_templates,
    cpu_workers,
    image_for,
    level_jobs,
    pending_checks,
    support_objects,
)
from .verdict import Outcome, verdict

# The Kubernetes client is imported where used: listing the tasks must not pay for it.

OVERASK_SECONDS = 60
# What the scheduler says of a pod whose ResourceClaim no node can satisfy
# (pkg/scheduler/framework/plugins/dynamicresources).
DRA_UNSCHEDULABLE = "cannot allocate all claims"


class SmokeRun:
    def __init__(self, kube: Kube, plan: Plan, level, progress=lambda text: None, timeout=300, *,
                 foreign=False, image=None):
        """foreign: a cluster kindgpu did not make (kindgpu.foreign): no images are loaded into
        its nodes, which pull them as the cluster is set up to. image: what every pod runs,
        instead of the level's image (invoke smoke --image)."""
        self.kube, self.plan, self.level, self.foreign, self.image = kube, plan, level, foreign, image
        self.progress, self.timeout = progress, timeout
        self.run_id = uuidlib.uuid4().hex[:6]
        self.workers = plan.workers
        self.gpu_workers = list(plan.gpu_workers)
        self.cpu_workers = cpu_workers(plan.workers)
        self.ts = sharing.of(plan.spec)  # an older record has none: not shared
        self.dra = plan.dra
        # What the scheduler's message on a pod asking too many GPUs names.
        self.refusal = DRA_UNSCHEDULABLE if self.dra else self.ts.resource

    def pods(self, selector):
        return self.kube.pods(NAMESPACE, selector)

    def create(self, obj):
        from kubernetes.utils import create_from_dict

        create_from_dict(self.kube.api_client, obj, namespace=NAMESPACE)

    def ensure_namespace(self):
        if self.kube.get("Namespace", NAMESPACE) is None:
            self.kube.core.create_namespace({"metadata": {"name": NAMESPACE,
                                                          "labels": {**names.MANAGED_BY}}})

    def run(self) -> Outcome:
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
            if self.dra:  # before the pods that ask through them
                concurrently(self.create, claim_templates(self.run_id, self.plan))
            # Every worker's Job and the pods that must stay Pending start at once; the latter wait for nothing.
            concurrently(self.create, level_jobs(self.run_id, self.plan, self.level, image, cpu_image))
            logs, failure = self.wait_jobs()
            # The checks' pods start once the level's have ended: they ask for GPUs those hold, and a
            # pod the scheduler has found unschedulable can wait minutes before it is tried again (on
            # the H200, a check started beside the compute pod stayed Pending past smoke's timeout).
            # After a failure they are not run: the failure is the verdict.
            checks = [] if failure else smoke_checks.for_plan(self.plan)
            # They run the visibility payload, in its image, at every level.
            extra_env = self.plan.spec["smoke"].get("env", {})
            concurrently(self.create, [o for c in checks for o in check_claims(self.run_id, c)])
            concurrently(self.create, [j for c in checks for j in check_jobs(self.run_id, cpu_image, c,
                                                                              self.ts.resource, extra_env,
                                                                              dra=self.dra)])
            limit, *asks = concurrently(lambda check: self.check_pending(*check), pending_checks(self.plan))
            rows = concurrently(self.finish_check, checks)
        finally:
            self.cleanup()
        outcome = verdict(self.level, self.workers, logs, failure, limit, dict(zip(self.cpu_workers, asks)),
                          time.monotonic() - start, rows, self.ts)
        outcome.fix = self.failure_fix
        return outcome

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
            cannot_pull, fix = image_pull_failure(pods, self.foreign)
            if cannot_pull:  # the image is in no node and cannot be pulled: waiting longer changes nothing
                return Seen(failed=cannot_pull, fix=fix)
            done = [p for p in pods if p.status.phase == "Succeeded"]
            waiting = {p.metadata.name: pod_state.waiting_reason(p) for p in pods if p.status.phase != "Succeeded"}
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
            if self.dra:  # first "waiting for its claim to be made", then the verdict on the claim
                unschedulable = unschedulable and DRA_UNSCHEDULABLE in (cond.message or "")
            return Seen(done=unschedulable, last=cond.message if cond else "Pending, not yet considered")

        try:
            seen = wait_for(probe, what=f"the pod asking {asked} GPU(s) of {node} to be refused",
                            timeout=OVERASK_SECONDS, interval=0.5, progress=self.progress)
            ok = self.refusal in (seen.last or "")
            return {"ok": ok, "node": node, "asked": asked,
                    "message": f"stays Pending: {seen.last}" if ok else f"Pending for another reason: {seen.last}"}
        except (WaitFailed, WaitTimeout) as err:
            return {"ok": False, "node": node, "asked": asked, "message": str(err)}

    def cleanup(self):
        selector = f"{RUN_LABEL}={self.run_id}"
        self.kube.batch.delete_collection_namespaced_job(NAMESPACE, label_selector=selector,
                                                         propagation_policy="Background")
        self.kube.core.delete_collection_namespaced_config_map(NAMESPACE, label_selector=selector)
        if self.dra:  # the claims made from templates go with their pods; the shared claim is ours to delete
            self.kube.resource.delete_collection_namespaced_resource_claim_template(NAMESPACE, label_selector=selector)
            self.kube.resource.delete_collection_namespaced_resource_claim(NAMESPACE, label_selector=selector)


def image_pull_failure(pods, foreign=False):
    """(what, fix) for the first pod whose image could not be pulled, after retries; ("", "") if none.
    foreign: a cluster kindgpu did not make, whose nodes only pull (smoke --kubeconfig loads nothing)."""
    found = pod_state.pull_backoff(pods)
    if found is None:
        return "", ""
    pod, cs = found
    what = (f"pod {pod.metadata.name} on {pod.spec.node_name} cannot get image {cs.image}: it is in "
            f"no node and could not be pulled ({cs.state.waiting.message or 'ImagePullBackOff'})")
    if foreign:
        return what, (f"make {cs.image} pullable by the cluster's nodes (push it to their registry), or run "
                      "an image they can pull: --image IMAGE (or the spec's smoke.cudaImage / smoke.pytorchImage "
                      "with --config)")
    return (what,
            f"put it into the host's Docker (`docker pull {cs.image}`, or `docker load -i` on a host "
            "without a registry), then `invoke smoke` loads it into the nodes; or point the spec's "
            "smoke.cudaImage / smoke.pytorchImage at an image you have")
