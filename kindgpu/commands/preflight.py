"""`invoke preflight`: the host's checks for the cluster the spec asks for (kindgpu.preflight)."""

from __future__ import annotations

from .. import flags, preflight


def run(config_file, checked: dict, *, as_json: bool = False, fix: bool = False) -> int:
    """Check the host; the exit code (0 when nothing FAILs). No GPU is looked at before the checks."""
    doc = flags.resolve(config_file, checked)
    return preflight.main(**preflight.request_fields(doc), as_json=as_json, fix=fix)
