"""Fakes of the outermost seams that several test modules use (fake_kubelet.py fakes the kubelet)."""

from types import SimpleNamespace

from docker.errors import ImageNotFound


class Notes:
    """A reporter that keeps what it is told to note (report.Reporter.note), in order."""

    def __init__(self):
        self.lines = []

    @property
    def notes(self):
        return self.lines

    def note(self, text):
        self.lines.append(text)


class FakeImages:
    """Docker's images by name: {name: image ID}; any other name is not found, as Docker says it."""

    def __init__(self, ids):
        self.ids = ids

    def get(self, name):
        if name not in self.ids:
            raise ImageNotFound(name)
        return SimpleNamespace(id=self.ids[name])


class FakeDocker:
    """Docker's client as kindgpu reads it: the containers listed, images by name, no networks."""

    def __init__(self, containers=(), image_ids=None):
        self.containers = SimpleNamespace(list=lambda **kw: containers)
        self.networks = SimpleNamespace(list=lambda **kw: [])
        self.images = FakeImages(image_ids or {})
