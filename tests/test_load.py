"""`invoke load`'s arguments and how it names images; the loading itself runs in tests/e2e."""

import pytest

from kindgpu import images, load
from kindgpu.errors import SpecError


def test_images_are_split_on_commas_and_spaces_once_each():
    assert load.parse_images("app:dev, sidecar:1 app:dev") == ["app:dev", "sidecar:1"]


@pytest.mark.parametrize("value, says", [("", "no image given"), ("a@sha256:0123", "digest reference"),
                                         ("--help", "not an image name")])
def test_bad_image_arguments_exit_2_naming_the_argument(value, says):
    with pytest.raises(SpecError) as caught:
        load.parse_images(value)
    assert caught.value.exit_code == 2
    assert caught.value.problems[0].field == "IMAGE" and says in caught.value.problems[0].message


def test_worker_numbers():
    assert load.parse_worker_numbers(None) is None
    assert load.parse_worker_numbers("3,1,3") == [1, 3]
    for bad in ("0", "1,x", "-1", ","):
        with pytest.raises(SpecError) as caught:
            load.parse_worker_numbers(bad)
        assert caught.value.problems[0].field == "--workers"


@pytest.mark.parametrize("given, recorded", [
    ("app", "docker.io/library/app:latest"),
    ("app:dev", "docker.io/library/app:dev"),
    ("team/app:1", "docker.io/team/app:1"),
    ("ghcr.io/team/app", "ghcr.io/team/app:latest"),
    ("localhost:5000/app", "localhost:5000/app:latest"),
    ("localhost:5000/app:2", "localhost:5000/app:2"),
    ("localhost/app:2", "localhost/app:2"),
])
def test_image_names_are_compared_as_containerd_records_them(given, recorded):
    assert images.normalized(given) == recorded


class Container:
    def __init__(self, name):
        self.name = name


def test_worker_numbers_follow_kinds_node_names():
    assert load.worker_number(Container("c-worker"), "c") == 1
    assert load.worker_number(Container("c-worker12"), "c") == 12


def test_an_image_the_hosts_docker_lacks_is_loaded_into_no_node():
    from types import SimpleNamespace

    from docker.errors import ImageNotFound

    def absent(name):
        raise ImageNotFound(name)

    client = SimpleNamespace(images=SimpleNamespace(get=absent))
    assert images.preload(client, [SimpleNamespace(name="n")], "absent:1", lambda text: None) == []
