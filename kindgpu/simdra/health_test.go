package main

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	resourceapi "k8s.io/api/resource/v1"
)

func TestAFaultTaintsTheDeviceAsNVIDIAsDriverDoes(t *testing.T) {
	other := GPU{UUID: "GPU-bbbb", Minor: 6, PCIBusID: "0000:16:00.0", Name: "NVIDIA H200", MemoryMiB: 143771}
	devices := Devices([]GPU{h200, other}, Driver{Version: "580.0.0", CUDAVersion: "13.0"},
		map[string]Fault{"GPU-aaaa": {Xid: 79, Effect: "NoExecute"}, "GPU-gone": {Xid: 48, Effect: "NoSchedule"}})
	if len(devices) != 2 || devices[0].Name != "gpu-5" || devices[1].Name != "gpu-6" {
		t.Fatalf("devices %v", devices)
	}
	want := []resourceapi.DeviceTaint{{Key: "gpu.nvidia.com/xid", Value: "79", Effect: resourceapi.DeviceTaintEffectNoExecute}}
	if !reflect.DeepEqual(devices[0].Taints, want) {
		t.Errorf("taints %v, want %v", devices[0].Taints, want)
	}
	if devices[1].Taints != nil {
		t.Errorf("a healthy GPU is tainted: %v", devices[1].Taints)
	}
}

func TestAFaultWithoutEffectLeavesTheDeviceOut(t *testing.T) {
	devices := Devices([]GPU{h200}, Driver{}, map[string]Fault{"GPU-aaaa": {Xid: 79}})
	if len(devices) != 0 {
		t.Errorf("a GPU without device taints is still published: %v", devices)
	}
}

func TestFaultsAreReadLeniently(t *testing.T) {
	path := filepath.Join(t.TempDir(), FaultsFile)
	if got := ReadFaults(path); len(got) != 0 {
		t.Errorf("missing file: %v", got)
	}
	os.WriteFile(path, []byte(`{"GPU-aaaa": {"xid": 13, "effect": "None"}}`), 0o644)
	if got := ReadFaults(path); !reflect.DeepEqual(got, map[string]Fault{"GPU-aaaa": {Xid: 13, Effect: "None"}}) {
		t.Errorf("read %v", got)
	}
	os.WriteFile(path, []byte(`{"GPU-aaaa": {"xid"`), 0o644)
	if got := ReadFaults(path); len(got) != 0 {
		t.Errorf("half a file: %v", got)
	}
}

func TestEveryPreparedContainerGetsTheHealthDirectory(t *testing.T) {
	spec := RequestSpec("uid-1", "gpus", []GPU{h200}, "/var/lib/kindgpu-sim-dra")
	for _, m := range spec.ContainerEdits.Mounts {
		if m.ContainerPath == "/usr/local/kindgpu/health" && m.HostPath == "/var/lib/kindgpu-sim-dra/health" {
			return
		}
	}
	t.Errorf("no health mount in %v", spec.ContainerEdits.Mounts)
}
