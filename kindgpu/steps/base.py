"""What a step of `invoke up` is (Step), what it may look at (Context), and how it fails (StepFailed)."""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import cached_property

from .. import nodes
from ..errors import KindgpuError
from ..kube import Kube
from ..nodes import Node
from ..plan import Plan
from ..report import Reporter

Progress = Callable[[str], None]  # what a running step tells its spinner line


class StepFailed(KindgpuError):
    """A step ran and is still not done, or raised; the cluster is left for inspection."""


class Context:
    """What every step may look at: the plan, the reporter, Docker's node containers and the cluster's API."""

    def __init__(self, plan: Plan, reporter: Reporter):
        self.plan = plan
        self.reporter = reporter

    @cached_property
    def docker(self):
        return nodes.docker_client()

    @cached_property
    def kube(self) -> Kube:
        return Kube(self.plan.kubeconfig)

    def nodes(self) -> dict[str, Node]:
        """{name: Node} of the cluster's node containers."""
        return {n.name: n for n in nodes.cluster_nodes(self.docker, self.plan.name)}

    def worker_nodes(self) -> dict[str, Node]:
        """{name: Node} of the plan's workers that have a container."""
        found = self.nodes()
        return {w.node: found[w.node] for w in self.plan.workers if w.node in found}

    def kind_env(self) -> dict[str, str]:
        return {**os.environ, "KIND_EXPERIMENTAL_DOCKER_NETWORK": nodes.network_name(self.plan.name)}


class Step:
    """One step of `invoke up`. It knows from live state whether it must run.

    - reason(ctx) returns why the step must run, as a sentence ("2 node(s) lack label(s)
      gpu-worker"), or "" when it is done. It may refuse instead, by raising KindgpuError with
      what to do.
    - run(ctx, progress) makes it done. progress(text) updates the step's spinner line; a line
      of its own goes through ctx.reporter.note().
    - still_wrong(ctx) is asked after run(): "" when the step is done, or what is still wrong.
      It is reason() again unless a step says otherwise.

    Class attributes:

    - name: the step's name for --force and --until, and its task (`invoke <name>`); the first
      line of the class docstring is that task's help.
    - needs_cluster: reason() reads the cluster, so the step is due while there is none.
    - guard: the step changes nothing; it checks the host before other steps change anything,
      so the runner runs it only when another step is due, or when it is forced.
    """

    name = ""
    needs_cluster = True
    guard = False

    def reason(self, ctx: Context) -> str:
        raise NotImplementedError

    def still_wrong(self, ctx: Context) -> str:
        return self.reason(ctx)

    def run(self, ctx: Context, progress: Progress) -> None:
        raise NotImplementedError
