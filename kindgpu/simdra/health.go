package main

// Faults kindgpu injects on purpose (`invoke fault`, kindgpu/faults.py): a GPU given an Xid is tainted
// in the ResourceSlice as NVIDIA's DRA driver taints a failed GPU (kubernetes-sigs/dra-driver-nvidia-gpu,
// main after v25.12.0, cmd/gpu-kubelet-plugin/device_health.go: key gpu.nvidia.com/xid, the Xid as value,
// NoSchedule for a fatal Xid, None for the application Xids it skips), or, where kindgpu says the
// Kubernetes version has no device taints, left out of the slice as NVIDIA's v25.12.0 does (driver.go).

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"

	resourceapi "k8s.io/api/resource/v1"
)

const (
	// FaultsFile is kindgpu's, in the share directory: {uuid: {"xid": N, "effect": E}}; an empty effect
	// means: leave the device out of the slice.
	FaultsFile = "faults.json"
	// TaintKeyXID is NVIDIA's (DriverName + "/xid").
	TaintKeyXID = DriverName + "/xid"
	// HealthDir, in the share directory, holds what the fake nvidia-smi shows of the GPUs' health (its
	// `xids` file, written by kindgpu); every prepared container gets it read-only at healthMount.
	HealthDir   = "health"
	healthMount = "/usr/local/kindgpu/health"
)

// Fault is one GPU's injected Xid and what it does to the device.
type Fault struct {
	Xid    uint64 `json:"xid"`
	Effect string `json:"effect"`
}

// ReadFaults reads the faults file; none when it is missing or half-written (kindgpu replaces it whole).
func ReadFaults(path string) map[string]Fault {
	data, err := os.ReadFile(path)
	if err != nil {
		return map[string]Fault{}
	}
	faults := map[string]Fault{}
	if json.Unmarshal(data, &faults) != nil {
		return map[string]Fault{}
	}
	return faults
}

// Devices are the ResourceSlice devices of the node's GPUs with their faults: tainted, or left out.
func Devices(gpus []GPU, driver Driver, faults map[string]Fault) []resourceapi.Device {
	var devices []resourceapi.Device
	for _, gpu := range gpus {
		fault, failed := faults[gpu.UUID]
		if failed && fault.Effect == "" {
			continue
		}
		device := Device(gpu, driver)
		if failed {
			device.Taints = []resourceapi.DeviceTaint{{
				Key:    TaintKeyXID,
				Value:  strconv.FormatUint(fault.Xid, 10),
				Effect: resourceapi.DeviceTaintEffect(fault.Effect),
			}}
		}
		devices = append(devices, device)
	}
	return devices
}

// ensureHealthDir makes the directory CDI mounts into every prepared container, so a mount never fails.
func ensureHealthDir(shareDir string) error {
	dir := filepath.Join(shareDir, HealthDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	xids := filepath.Join(dir, "xids")
	if _, err := os.Stat(xids); errors.Is(err, os.ErrNotExist) {
		return os.WriteFile(xids, nil, 0o644)
	}
	return nil
}
