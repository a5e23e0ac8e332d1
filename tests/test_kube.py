"""What the Kubernetes seam makes of the API's answers: 404 is None, and only "not yet" is waited out."""

import pytest
import urllib3
from kubernetes.client.exceptions import ApiException

from kindgpu import kube
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
    (ApiException(status=401), False),
    (ApiException(status=403), False),
    (ApiException(status=422), False),
    (ValueError("a bug"), False),
])
def test_only_no_answer_5xx_and_429_mean_not_yet(err, transient):
    assert kube.is_transient(err) is transient


def test_a_wait_is_not_fooled_by_a_forbidden_api():
    calls = []

    def probe():
        calls.append(1)
        raise ApiException(status=403, reason="Forbidden")

    with pytest.raises(ApiException):
        wait_for(probe, what="x", timeout=5, transient=kube.is_transient, sleep=lambda s: None)
    assert len(calls) == 1
    with pytest.raises(WaitTimeout, match="ApiException"):
        wait_for(answer(503), what="x", timeout=0, transient=kube.is_transient, sleep=lambda s: None)


def test_an_attempt_gives_back_a_not_yet_and_raises_anything_else():
    assert kube.attempt(lambda: "answer") == ("answer", None)
    value, err = kube.attempt(answer(503))
    assert value is None and err.status == 503
    with pytest.raises(ApiException):
        kube.attempt(answer(403))
