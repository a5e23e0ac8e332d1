"""How a pytester run gets kindgpu's pytest plugin: through the entry point where the installed
kindgpu declares it (CI's `pip install -e .`), else with -p (twice would be an error)."""

from importlib.metadata import entry_points

REGISTERED = any(ep.value == "kindgpu.pytest_plugin" for ep in entry_points(group="pytest11"))
PLUGIN_ARGS = [] if REGISTERED else ["-p", "kindgpu.pytest_plugin"]
