"""`invoke preflight --fix` on a host without kind and kubectl: it builds the proven ones with the host's Go
into kindgpu's own tools directory, and every kindgpu command then uses them."""

import json
import os
import shutil

from cluster_helpers import invoke


def test_fix_installs_the_proven_kind_and_kubectl_and_kindgpu_uses_them(tmp_path, harness):
    go = shutil.which("go")
    assert go, "Go is on CI's PATH (hack/harness needs it)"
    path = tmp_path / "path"
    path.mkdir()
    for tool in ("go", "docker"):  # nothing else: no kind, no kubectl
        (path / tool).symlink_to(shutil.which(tool))
    env = {"PATH": str(path), "XDG_DATA_HOME": str(tmp_path / "data"), "KINDGPU_STATE_DIR": str(tmp_path / "state")}
    before = json.loads(invoke("preflight", "--simulate", "2", "--json", env=env).stdout)
    checks = {c["id"]: c for c in before["checks"]}
    assert checks["kind"]["status"] == checks["kubectl"]["status"] == "FAIL"
    assert checks["kind"]["fix"] == "invoke preflight --fix"

    fixed = json.loads(invoke("preflight", "--simulate", "2", "--json", "--fix", env=env, timeout=1800).stdout)
    tools_dir = tmp_path / "data" / "kindgpu" / "bin"
    assert f"installed kind v0.33.0 as {tools_dir / 'kind'} (go install sigs.k8s.io/kind@v0.33.0)" in " ".join(
        fixed["fixed"])
    assert f"installed kubectl v1.37.2 as {tools_dir / 'kubectl'}" in " ".join(fixed["fixed"])
    checks = {c["id"]: c for c in fixed["checks"]}
    assert (checks["kind"]["status"], checks["kind"]["found"]) == ("PASS", "kind v0.33.0")
    assert (checks["kubectl"]["status"], checks["kubectl"]["found"]) == ("PASS", "kubectl v1.37.2")
    assert os.access(tools_dir / "kubectl", os.X_OK)

    again = json.loads(invoke("preflight", "--simulate", "2", "--json", "--fix", env=env).stdout)
    assert not any("installed" in line for line in again["fixed"])  # a proven kind and kubectl stay
