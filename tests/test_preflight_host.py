"""Preflight's host checks: inotify sysctls (and --fix), memory, GPU capacity, main()."""

import io
import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from kindgpu.errors import SpecError
from kindgpu.preflight import Request, Status, host, main, overall

WATCHES = "fs.inotify.max_user_watches"
INSTANCES = "fs.inotify.max_user_instances"


def fake_proc(root, watches, instances, mem_available_kb=16 * 1024 * 1024):
    ino = root / "sys" / "fs" / "inotify"
    ino.mkdir(parents=True, exist_ok=True)
    (ino / "max_user_watches").write_text(f"{watches}\n")
    (ino / "max_user_instances").write_text(f"{instances}\n")
    (root / "meminfo").write_text(
        f"MemTotal:       {mem_available_kb * 2} kB\nMemFree:        {mem_available_kb} kB\n"
        f"MemAvailable:   {mem_available_kb} kB\nBuffers:          1024 kB\n"
    )
    return root


def by_id(checks):
    return {c.id: c for c in checks}


def test_low_inotify_limits_fail_with_a_runnable_fix(tmp_path):
    proc = fake_proc(tmp_path / "proc", 8192, 128)
    req = Request(proc_root=proc, sysctl_conf=tmp_path / "sysctl.d" / "99-kindgpu.conf")
    checks = by_id(host.sysctl_checks(req))
    for cid, have, want in (("max-user-watches", 8192, 524288), ("max-user-instances", 128, 512)):
        c = checks[cid]
        assert c.status is Status.FAIL
        assert c.found == f"{have}, below {want}"
        assert str(req.sysctl_conf) in c.fix and "sysctl -p" in c.fix
    # The printed command writes a file sysctl can read: run its first half for real.
    tee_part = checks["max-user-watches"].fix.split(" && ")[0].replace("sudo ", "")
    subprocess.run(["sh", "-c", f"mkdir -p {req.sysctl_conf.parent} && {tee_part} >/dev/null"],
                   check=True)
    written = dict(re.findall(r"^(\S+) = (\d+)$", req.sysctl_conf.read_text(), re.M))
    assert written == {k: str(v) for k, v in host.SYSCTLS.items()}


def test_fix_raises_limits_persists_them_and_never_lowers(tmp_path):
    proc = fake_proc(tmp_path / "proc", 1048576, 128)  # watches already above the minimum
    conf = tmp_path / "sysctl.d" / "99-kindgpu.conf"
    req = Request(proc_root=proc, sysctl_conf=conf)
    changed = host.apply_sysctl_fixes(req)
    assert any(str(conf) in line for line in changed)
    assert f"set {INSTANCES} = 512 (was 128)" in changed
    assert not any(line.startswith(f"set {WATCHES}") for line in changed)
    assert host.read_sysctl(req, WATCHES) == 1048576
    assert host.read_sysctl(req, INSTANCES) == 512
    assert f"{WATCHES} = 1048576" in conf.read_text()
    assert {c.status for c in host.sysctl_checks(req)} == {Status.PASS}
    assert host.apply_sysctl_fixes(req) == []  # idempotent


def test_main_fix_reports_what_changed_then_checks_again(tmp_path, proven_tools):
    proc = fake_proc(tmp_path / "proc", 8192, 128)
    conf = tmp_path / "99-kindgpu.conf"
    out = io.StringIO()
    main(workers=1, gpus=1, simulate=1, as_json=True, fix=True, out=out,
         proc_root=proc, sysctl_conf=conf, docker_url="unix:///nonexistent/docker.sock")
    doc = json.loads(out.getvalue())
    assert any("set fs.inotify.max_user_watches = 524288 (was 8192)" == f for f in doc["fixed"])
    statuses = {c["id"]: c["status"] for c in doc["checks"]}
    assert statuses["max-user-watches"] == statuses["max-user-instances"] == "PASS"


def test_fix_that_cannot_write_says_so(tmp_path, proven_tools):
    """A conf path that cannot be created (its parent is a file; root ignores file modes)."""
    proc = fake_proc(tmp_path / "proc", 8192, 128)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    conf = blocker / "99-kindgpu.conf"
    with pytest.raises(OSError):
        host.apply_sysctl_fixes(Request(proc_root=proc, sysctl_conf=conf))
    out = io.StringIO()
    rc = main(simulate=2, fix=True, as_json=True, out=out, proc_root=proc, sysctl_conf=conf,
              docker_url="unix:///nonexistent/docker.sock")
    doc = json.loads(out.getvalue())
    assert rc == 1 and doc["fixed"][0].startswith("could not apply the sysctl fixes")
    assert {c["status"] for c in doc["checks"] if c["id"].startswith("max-user")} == {"FAIL"}


def test_this_hosts_inotify_limits_as_they_are():
    req = Request()
    for c in host.sysctl_checks(req):
        key = "fs.inotify." + c.id.replace("-", "_")
        have = int(Path("/proc/sys", *key.split(".")).read_text())
        assert c.status is (Status.PASS if have >= host.SYSCTLS[key] else Status.FAIL)


@pytest.mark.parametrize("workers", [1, 2, 3, 8, 40])
def test_memory_estimate(tmp_path, workers):
    need = host.CONTROL_PLANE_MIB + host.WORKER_MIB * workers
    for avail_mib, want in ((need - 1, Status.FAIL), (need, Status.WARN),
                            (int(need / 0.8) + 1, Status.PASS)):
        proc = fake_proc(tmp_path / f"p{avail_mib}", 524288, 512, mem_available_kb=avail_mib * 1024)
        c = host.memory_check(Request(workers=workers, proc_root=proc))
        assert c.status is want, (workers, avail_mib, c.found)
        assert c.details == {"available_mib": avail_mib, "estimated_need_mib": need}
        if want is Status.FAIL and c.fix:
            fit = int(c.fix.split("--workers ")[1])
            assert host.memory_needed_mib(fit) <= avail_mib < host.memory_needed_mib(fit + 1)


def test_memory_on_this_host():
    c = host.memory_check(Request(workers=2))
    avail = int(re.search(r"MemAvailable:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1)) // 1024
    assert abs(c.details["available_mib"] - avail) < 512  # read twice, moments apart
    assert c.details["estimated_need_mib"] == 1000


def fixed_request(fix, simulate):
    args = shlex.split(fix)
    def get(flag):
        return int(args[args.index(flag) + 1])

    return Request(workers=get("--workers"), gpus=get("--gpus"),
                   simulate=get("--simulate") if "--simulate" in args else simulate)


@pytest.mark.parametrize("available", [0, 1, 2, 3, 7, 8])
@pytest.mark.parametrize("workers, gpus", [(1, 1), (2, 1), (2, 4), (4, 2), (3, 3), (1, 8)])
def test_gpu_capacity_and_its_fix_fits(available, workers, gpus):
    req = Request(workers=workers, gpus=gpus)
    c = host.gpu_capacity_check(req, available)
    assert c.status is (Status.PASS if workers * gpus <= available else Status.FAIL)
    if c.status is Status.FAIL:
        assert f"{workers * gpus - available} short" in c.found
        if available:
            again = fixed_request(c.fix, None)
            assert host.gpu_capacity_check(again, available).status is Status.PASS
        else:
            assert c.fix == ""


def test_gpu_capacity_simulated_suggests_enough_simulated_gpus():
    req = Request(workers=4, gpus=2, simulate=4)
    c = host.gpu_capacity_check(req, 4)
    assert c.status is Status.FAIL and "4 simulated" in c.found
    again = fixed_request(c.fix, 4)
    assert host.gpu_capacity_check(again, again.simulate).status is Status.PASS


def test_gpu_capacity_of_a_worker_list_counts_its_gpus_not_workers_times_the_largest():
    # [{gpus: [0, 1, 2, 3]}, {gpus: []}]: 4 GPUs over 2 workers, not 2 × 4.
    c = host.gpu_capacity_check(Request(workers=2, gpus=4, gpus_total=4), 4)
    assert c.status is Status.PASS and "4 GPU(s) over 2 listed worker(s)" in c.found
    c = host.gpu_capacity_check(Request(workers=2, gpus=4, gpus_total=5), 4)
    assert c.status is Status.FAIL and "1 short" in c.found


def test_gpu_capacity_skips_without_inventory():
    assert host.gpu_capacity_check(Request(), None).status is Status.SKIP


def test_invalid_request():
    with pytest.raises(SpecError) as e:
        Request(workers=0, gpus=-1, simulate=0)
    assert [p.field for p in e.value.problems] == ["--workers", "--gpus", "--simulate"]
    err = io.StringIO()
    assert main(workers=0, as_json=True, out=err) == 2
    assert "  - --workers: must be at least 1 (got 0)" in err.getvalue()


def test_overall():
    from kindgpu.preflight import Check
    def mk(status):
        return Check("x", "x", status, "")

    assert overall([mk(Status.PASS), mk(Status.SKIP)]) is Status.PASS
    assert overall([mk(Status.PASS), mk(Status.WARN)]) is Status.WARN
    assert overall([mk(Status.WARN), mk(Status.FAIL)]) is Status.FAIL


def test_main_json_and_exit_code_without_docker(tmp_path):
    """Docker unreachable (a socket that is not there) is a FAIL with a fix; exit 1."""
    proc = fake_proc(tmp_path / "proc", 524288, 512)
    out = io.StringIO()
    rc = main(workers=2, gpus=1, simulate=2, as_json=True, out=out, proc_root=proc,
              docker_url="unix:///nonexistent/docker.sock")
    doc = json.loads(out.getvalue())
    checks = {c["id"]: c for c in doc["checks"]}
    assert rc == 1 and doc["result"] == "FAIL" and doc["ok"] is False
    assert checks["docker"]["status"] == "FAIL"
    assert checks["docker"]["fix"] == "sudo systemctl start docker"
    assert "its socket is not there" in checks["docker"]["found"]
    assert checks["cluster-name"]["status"] == "SKIP"
    assert checks["gpu-capacity"]["status"] == "PASS"
    assert checks["api-server"]["status"] == "PASS"  # loopback unless the spec says otherwise
    assert doc["inventory"]["simulated"] is True and len(doc["inventory"]["gpus"]) == 2
    assert doc["request"] == {"cluster_name": "kindgpu", "workers": 2, "gpus_per_worker": 1,
                              "simulate": 2}


def test_table_output_lists_every_check_and_the_fixes(tmp_path):
    proc = fake_proc(tmp_path / "proc", 8192, 512)
    out = io.StringIO()
    rc = main(workers=2, gpus=4, simulate=2, out=out, proc_root=proc,
              sysctl_conf=tmp_path / "k.conf", docker_url="unix:///nonexistent/docker.sock")
    text = out.getvalue()
    assert rc == 1
    for title in ("NVIDIA driver", "Docker daemon", "Kernel: inotify.max_user_watches",
                  "GPUs for the request", "Memory for the nodes", "Cluster name"):
        assert title in text
    assert "To fix:" in text
    assert "    sudo systemctl start docker\n" in text  # a command on a line of its own
    assert "    invoke up --workers 2 --gpus 4 --simulate 8\n" in text
    assert text.rstrip().splitlines()[-1].startswith("FAIL:")


@pytest.mark.parametrize("address, status", [("127.0.0.1", Status.PASS), ("::1", Status.PASS),
                                             ("0.0.0.0", Status.WARN), ("10.0.0.7", Status.WARN)])
def test_api_server_address_off_loopback_is_a_warning(address, status):
    c = host.api_server_check(Request(api_address=address))
    assert c.status is status and c.found.startswith(address)
    assert ("open to the network" in c.found) == (status is Status.WARN)
