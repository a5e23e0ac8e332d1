"""The steps of `invoke up`, one module each. This list is the one place where a step is added.

A step's contract is in base.py. Every step is also a task of its own (`invoke create`,
`invoke label`, ...), made from this list in kindgpu/tasks.py: asking for a step runs the steps
before it first, as `invoke up --until <step>` does.
"""

from .base import Context, Step, StepFailed
from .config import Config
from .create import Create
from .device_plugin import DevicePlugin
from .isolate import Isolate
from .label import Label
from .preflight import Preflight

__all__ = ["Config", "Context", "Create", "DevicePlugin", "Isolate", "Label", "Preflight", "Step", "StepFailed",
           "pipeline"]


def pipeline() -> list[Step]:
    """The steps of `invoke up`, in order."""
    return [Preflight(), Config(), Create(), Label(), Isolate(), DevicePlugin()]
