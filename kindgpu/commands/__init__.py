"""The commands behind the tasks: `invoke X` runs kindgpu.commands.X.run (X with `_` for `-`).

**A command is added** as a module here, with one `run` that takes plain, checked values (the task
has checked its flags: kindgpu.flags), prints what the user reads and returns what the task exits
with; then a typed task in kindgpu/tasks.py calls it. The work itself stays in the package that
owns it (cluster, smoke, kubeconfig, load, nodeimage, preflight).
"""

from . import config, down, fault, heal, kubeconfig, load, node_images, preflight, smoke, status, up

__all__ = ["config", "down", "fault", "heal", "kubeconfig", "load", "node_images", "preflight", "smoke", "status",
           "up"]
