"""Random specs through `kindgpu config --dry-run`: each one passes, or exits 2 with `ERROR:` naming a
field, never a traceback, never in more than a second. A fixed seed and a bounded count keep it repeatable."""

import random
import time

import pytest
import yaml
from invoke import Collection, Program

from kindgpu import tasks

SEED, COUNT = 20261207, 300
VALUES = [None, True, 0, -1, 1, 2, 8, 3.5, 10**12, "", "x", "Ünïcode", "a" * 300, "0.0.0.0", "::1", "127.0.0.1",
          [], [0], [0, 1], [{"gpus": []}], [{"gpus": [0]}, {"gpus": [0]}], {}, {"gpus": 2}, {"a": 1},
          "kindest/node:v1.37.0", "Bad Image", "v0.20.0", "nvcr.io/x", {"timeSlicing": {"replicas": 4}},
          {"NVIDIA_VISIBLE_DEVICES": "all"}, {"ok": "1"}, {"k/v": "x,y"}, "GPU-55e9074e", [{"labels": {"a": "b"}}]]
TOP = ["name", "workers", "gpusPerWorker", "nodeImage", "prepareNodeImage", "labels", "gpuFeatureLabels", "apiServer",
       "kubeconfig", "mergeKubeconfig", "devicePlugin", "simulate", "smoke", "unknownField", "apiVersion", "kind"]
NESTED = {"apiServer": ["address", "port", "allowRemoteAPI", "bogus"],
          "devicePlugin": ["image", "version", "deviceListStrategy", "deviceIDStrategy", "sharing", "bogus"],
          "simulate": ["gpus", "product", "memoryMiB", "bogus"], "smoke": ["cudaImage", "pytorchImage", "env"]}


def random_spec(rng):
    doc = {"apiVersion": "kindgpu.dev/v1alpha1", "kind": "GPUCluster", "simulate": {"gpus": 8}}
    for _ in range(rng.choice([0, 1, 1, 2, 3])):
        key = rng.choice(TOP)
        if key in NESTED and rng.random() < 0.6:
            section = doc.setdefault(key, {}) if isinstance(doc.get(key), dict) else doc.setdefault(key, {})
            if not isinstance(section, dict):
                section = doc[key] = {}
            section[rng.choice(NESTED[key])] = rng.choice(VALUES)
        else:
            doc[key] = rng.choice(VALUES)
    return doc


def run_config(path, capsys):
    program = Program(namespace=Collection.from_module(tasks), name="kindgpu")
    started = time.perf_counter()
    with pytest.raises(SystemExit) as exited:
        program.run(["kindgpu", "config", "--config", str(path), "--dry-run"], exit=True)
        raise SystemExit(0)
    out = capsys.readouterr()
    return exited.value.code or 0, out.out + out.err, time.perf_counter() - started


def test_random_specs_pass_or_name_the_field(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KINDGPU_STATE_DIR", str(tmp_path / "state"))
    rng = random.Random(SEED)
    outcomes = {0: 0, 2: 0}
    for i in range(COUNT):
        doc = random_spec(rng)
        path = tmp_path / f"spec-{i}.yaml"
        path.write_text(yaml.safe_dump(doc))
        code, text, seconds = run_config(path, capsys)
        assert "Traceback" not in text, (doc, text)
        assert code in (0, 2), (doc, code, text)
        if code == 2:
            assert text.startswith("ERROR:") and "\n  - " in text, (doc, text)
        assert seconds < 1.0, (doc, seconds)
        outcomes[code] += 1
    assert outcomes[0] > 30 and outcomes[2] > 100, outcomes  # the generator reaches both ends
