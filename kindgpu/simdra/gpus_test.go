package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	resourceapi "k8s.io/api/resource/v1"
)

// NVIDIA's names, copied from its driver's source (see the file's "source").
const nvidiaTestData = "../../tests/testdata/dra/nvidia-gpu-device.json"

type nvidiaDevice struct {
	Driver     string            `json:"driver"`
	Attributes map[string]string `json:"attributes"`
	Capacity   map[string]string `json:"capacity"`
}

func loadNVIDIA(t *testing.T) nvidiaDevice {
	t.Helper()
	data, err := os.ReadFile(nvidiaTestData)
	if err != nil {
		t.Fatal(err)
	}
	var device nvidiaDevice
	if err := json.Unmarshal(data, &device); err != nil {
		t.Fatal(err)
	}
	return device
}

var h200 = GPU{UUID: "GPU-aaaa", Minor: 5, PCIBusID: "0000:15:00.0", Name: "NVIDIA H200", MemoryMiB: 143771,
	Brand: "Nvidia", Architecture: "Hopper", ComputeCap: "9.0"}

func TestDeviceHasExactlyNVIDIAsAttributes(t *testing.T) {
	nvidia := loadNVIDIA(t)
	if nvidia.Driver != DriverName {
		t.Fatalf("driver %q, NVIDIA's is %q", DriverName, nvidia.Driver)
	}
	device := Device(h200, Driver{Version: "580.95.05", CUDAVersion: "13.0"})
	var got, want []string
	for name, value := range device.Attributes {
		kind := "string"
		switch {
		case value.VersionValue != nil:
			kind = "version"
		case value.IntValue != nil:
			kind = "int"
		case value.BoolValue != nil:
			kind = "bool"
		}
		got = append(got, string(name)+":"+kind)
	}
	for name, kind := range nvidia.Attributes {
		want = append(want, name+":"+kind)
	}
	sort.Strings(got)
	sort.Strings(want)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("attributes\n got %v\nwant %v", got, want)
	}
	var capacity []string
	for name := range device.Capacity {
		capacity = append(capacity, string(name))
	}
	if len(capacity) != len(nvidia.Capacity) || nvidia.Capacity[capacity[0]] == "" {
		t.Fatalf("capacity %v, NVIDIA's %v", capacity, nvidia.Capacity)
	}
}

func TestDeviceValues(t *testing.T) {
	device := Device(h200, Driver{Version: "580.95.05", CUDAVersion: "13.0"})
	if device.Name != "gpu-5" {
		t.Errorf("name %q, want gpu-<minor>", device.Name)
	}
	for name, want := range map[resourceapi.QualifiedName]string{
		"type": "gpu", "uuid": "GPU-aaaa", "productName": "NVIDIA H200", "brand": "Nvidia", "architecture": "Hopper",
		"cudaComputeCapability": "9.0.0", "driverVersion": "580.95.05", "cudaDriverVersion": "13.0.0",
		"resource.kubernetes.io/pciBusID": "0000:15:00.0", "resource.kubernetes.io/pcieRoot": "pci0000:15",
	} {
		value := device.Attributes[name]
		got := ""
		if value.StringValue != nil {
			got = *value.StringValue
		} else if value.VersionValue != nil {
			got = *value.VersionValue
		}
		if got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	memory := device.Capacity["memory"].Value
	if memory.Value() != 143771<<20 || memory.String() != "143771Mi" {
		t.Errorf("memory %s (%d bytes)", memory.String(), memory.Value())
	}
}

func TestSemver(t *testing.T) {
	for in, want := range map[string]string{"9.0": "9.0.0", "13.0": "13.0.0", "580.95.05": "580.95.05", "12": "12.0.0",
		"580.0.0-simulated": "580.0.0-simulated"} {
		if got := semver(in); got != want {
			t.Errorf("semver(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNodeGPUsFromTheSimGPUsDirectory(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"GPU-b", "GPU-a", "GPU-stray", "not-a-gpu"} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	plan, err := LoadPlan(`[{"uuid":"GPU-a","minor":3,"pci_bus_id":"0000:13:00.0"},{"uuid":"GPU-b","minor":1,"pci_bus_id":"0000:11:00.0"},{"uuid":"GPU-c","minor":2}]`)
	if err != nil {
		t.Fatal(err)
	}
	uuids, err := Discover(dir)
	if err != nil {
		t.Fatal(err)
	}
	gpus, unknown := NodeGPUs(plan, uuids)
	if len(gpus) != 2 || gpus[0].UUID != "GPU-b" || gpus[1].UUID != "GPU-a" {
		t.Errorf("gpus %+v: want the plan's GPUs of this node, by minor", gpus)
	}
	if !reflect.DeepEqual(unknown, []string{"GPU-stray"}) {
		t.Errorf("unknown %v", unknown)
	}
}

func TestRequestSpecGivesTheFakeNvidiaSMIExactlyTheClaimedGPUs(t *testing.T) {
	other := GPU{UUID: "GPU-bbbb", Minor: 1, PCIBusID: "0000:11:00.0", Name: "NVIDIA H200", MemoryMiB: 143771}
	spec := RequestSpec("uid-1", "gpus/sub", []GPU{h200, other}, "/var/lib/kindgpu-sim-dra")
	if spec.Kind != "k8s.gpu.nvidia.com/claim" {
		t.Errorf("kind %q", spec.Kind)
	}
	env := strings.Join(spec.ContainerEdits.Env, "|")
	// Bus-id order, as NVML enumerates them; nvidia-smi's bus id format.
	if want := "NVIDIA_VISIBLE_DEVICES=GPU-bbbb,GPU-aaaa|KINDGPU_SIM_GPUS=GPU-bbbb 1 00000000:11:00.0 143771 NVIDIA H200\n" +
		"GPU-aaaa 5 00000000:15:00.0 143771 NVIDIA H200"; env != want {
		t.Errorf("env %q\nwant %q", env, want)
	}
	mounts := map[string]string{}
	for _, m := range spec.ContainerEdits.Mounts {
		mounts[m.ContainerPath] = m.HostPath
	}
	if mounts["/usr/bin/nvidia-smi"] != "/var/lib/kindgpu-sim-dra/nvidia-smi" ||
		mounts["/usr/local/kindgpu/bin/busybox"] != "/var/lib/kindgpu-sim-dra/busybox" {
		t.Errorf("mounts %v", mounts)
	}
	var names []string
	for _, device := range spec.Devices {
		names = append(names, "k8s.gpu.nvidia.com/claim="+device.Name)
		if len(device.ContainerEdits.Env) == 0 {
			t.Errorf("device %s edits nothing: CDI refuses it", device.Name)
		}
	}
	if want := []string{CDIDeviceID("uid-1", "gpus/sub", h200), CDIDeviceID("uid-1", "gpus/sub", other)}; !reflect.DeepEqual(names, want) {
		t.Errorf("CDI devices %v, want %v", names, want)
	}
	if got := SpecFile("/var/run/cdi", "uid-1", "gpus/sub"); got != "/var/run/cdi/k8s.gpu.nvidia.com-claim_uid-1-gpus-sub.json" {
		t.Errorf("spec file %s", got)
	}
	if ok, _ := filepath.Match(ClaimSpecFiles("/var/run/cdi", "uid-1"), SpecFile("/var/run/cdi", "uid-1", "gpus")); !ok {
		t.Error("ClaimSpecFiles does not match the claim's spec files")
	}
	if ok, _ := filepath.Match(ClaimSpecFiles("/var/run/cdi", "uid-1"), SpecFile("/var/run/cdi", "uid-10", "gpus")); ok {
		t.Error("ClaimSpecFiles matches another claim's spec files")
	}
}
