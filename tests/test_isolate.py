"""The isolate step's view of the host."""

from kindgpu.steps import isolate


def test_gpu_device_nodes_of_the_host_are_character_devices_named_nvidia_and_a_number(tmp_path):
    import os
    import stat

    (tmp_path / "nvidia0").write_text("")  # a file, not a device
    os.mknod(tmp_path / "nvidiactl", stat.S_IFCHR | 0o600, os.makedev(195, 255))
    assert not isolate.host_has_gpu_devices(tmp_path)
    os.mknod(tmp_path / "nvidia3", stat.S_IFCHR | 0o600, os.makedev(195, 3))
    assert isolate.host_has_gpu_devices(tmp_path)
