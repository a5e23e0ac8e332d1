"""The `kindgpu` console command: the same tasks as `invoke`, runnable outside the repo."""

from invoke import Collection, Program

from . import tasks


def main():
    Program(namespace=Collection.from_module(tasks), name="kindgpu", version="0.1.0").run()
