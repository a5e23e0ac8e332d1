"""kindgpu's tasks: `invoke --list`. They live in the package so the `kindgpu` command has them too."""

from kindgpu.tasks import ns  # noqa: F401
