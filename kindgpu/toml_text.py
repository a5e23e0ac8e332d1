"""TOML text as a dict: containerd's config (nodeimage) and the NVIDIA toolkit's (preflight). Stdlib only."""

from __future__ import annotations

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the tomli dependency
    import tomli as tomllib


def load_toml(text: str) -> dict:
    """Parse TOML; a ValueError (tomllib.TOMLDecodeError) when it is not valid."""
    return tomllib.loads(text)
