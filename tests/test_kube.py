"""What the Kubernetes seam makes of the API's answers: 404 is None, and only "not yet" is waited out."""

from types import SimpleNamespace

import pytest
import urllib3
from kubernetes.client.exceptions import ApiException

from kindgpu import kube
from kindgpu.errors import KindgpuError
from kindgpu.wait import WaitTimeout, wait_for


def answer(status):
    def call(*args, **kwargs):
        raise ApiException(status=status, reason="test")

    return call


def test_not_found_is_none_and_other_answers_are_raised():
    assert kube.none_if_absent(answer(404), "name", "namespace") is None
    assert kube.none_if_absent(lambda *a, **kw: "object", "name") == "object"
    with pytest.raises(ApiException):
        kube.none_if_absent(answer(403), "name", "namespace")


@pytest.mark.parametrize("err, transient", [
    (ApiException(status=503), True),
    (ApiException(status=429), True),
    (ApiException(status=0), True),  # no HTTP answer
    (urllib3.exceptions.MaxRetryError(None, "/api", "refused"), True),
    (ConnectionRefusedError(), True),
    (urllib3.exceptions.SSLError("EOF occurred in violation of protocol"), True),  # TLS not ready yet
    (ApiException(status=401), False),
    (ApiException(status=422), False),
    (ValueError("a bug"), False),
])
def test_only_no_answer_5xx_and_429_mean_not_yet(err, transient):
    assert kube.is_transient(err) is transient
    assert kube.is_transient(err, own_cluster=False) is transient


def test_a_403_is_not_yet_on_kindgpus_own_cluster_and_final_on_anyone_elses():
    """kindgpu's admin credentials are refused only while a restarted API server's RBAC is not synced."""
    assert kube.is_transient(ApiException(status=403))
    assert not kube.is_transient(ApiException(status=403), own_cluster=False)


def test_a_wait_is_not_fooled_by_a_forbidden_api_of_a_cluster_kindgpu_did_not_make():
    calls = []

    def probe():
        calls.append(1)
        raise ApiException(status=403, reason="Forbidden")

    def foreign(err):
        return kube.is_transient(err, own_cluster=False)

    with pytest.raises(ApiException):
        wait_for(probe, what="x", timeout=5, transient=foreign, sleep=lambda s: None)
    assert len(calls) == 1
    with pytest.raises(WaitTimeout, match="ApiException"):
        wait_for(answer(503), what="x", timeout=0, transient=kube.is_transient, sleep=lambda s: None)


def test_an_attempt_gives_back_a_not_yet_and_raises_anything_else():
    assert kube.attempt(lambda: "answer") == ("answer", None)
    value, err = kube.attempt(answer(503))
    assert value is None and err.status == 503
    with pytest.raises(ApiException):
        kube.attempt(answer(403), own_cluster=False)
    with pytest.raises(ApiException):
        kube.attempt(answer(422))


class Starting:
    """An API server coming back: no connection, then TLS, then RBAC not synced, then an answer."""

    def __init__(self, *errors):
        self.errors = list(errors)
        self.calls = 0

    def list_namespaced_config_map(self, namespace, **kw):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)


def test_waiting_for_a_restarting_api_server_is_said_once_and_bounded():
    server = Starting(urllib3.exceptions.MaxRetryError(None, "/api", "refused"),
                      urllib3.exceptions.SSLError("EOF occurred in violation of protocol"),
                      ApiException(status=403, reason="Forbidden"))
    notes = []
    kube.wait_answering(SimpleNamespace(core=server), "c", notes.append, timeout=30, interval=0)
    assert server.calls == 4 and len(notes) == 1 and notes[0].startswith("waiting for the API server of c (")
    down = Starting(*[ApiException(status=503, reason="Service Unavailable")] * 1000)
    with pytest.raises(KindgpuError) as caught:
        kube.wait_answering(SimpleNamespace(core=down), "c", notes.append, timeout=0, interval=0)
    assert "did not answer in 0s (HTTP 503 Service Unavailable)" in str(caught.value) and caught.value.fix
