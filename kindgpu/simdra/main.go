// kindgpu-sim-dra is kindgpu's DRA kubelet plugin for simulated GPUs.
//
// It runs on every simulated GPU worker (a DaemonSet rendered by kindgpu/simdra/manifest.py) and
// publishes one ResourceSlice for the node, under NVIDIA's driver name gpu.nvidia.com, with exactly
// the node's GPUs: the files named by UUID in the sim-gpus directory, described as kindgpu's plan
// describes them and as NVIDIA's DRA driver publishes a GPU. A prepared claim reaches its pod
// through CDI: NVIDIA_VISIBLE_DEVICES and a fake nvidia-smi showing exactly the claimed GPUs.
//
// Settings come from the environment (see settings below); `kindgpu-sim-dra devices` prints the
// devices it would publish, as JSON, and exits.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/dynamic-resource-allocation/kubeletplugin"
	"k8s.io/dynamic-resource-allocation/resourceslice"
	"k8s.io/klog/v2"
)

type settings struct {
	nodeName  string
	deviceDir string
	plan      map[string]GPU
	driver    Driver
	cdiRoot   string
	shareDir  string // on the node and in this container: CDI mounts name node paths
	sources   string // in the image: nvidia-smi.sh and the static busybox
}

func env(name, fallback string) string {
	if value := os.Getenv(name); value != "" {
		return value
	}
	return fallback
}

func loadSettings() (settings, error) {
	plan, err := LoadPlan(env("KINDGPU_SIM_PLAN_GPUS", "[]"))
	if err != nil {
		return settings{}, err
	}
	return settings{
		nodeName:  os.Getenv("NODE_NAME"),
		deviceDir: env("KINDGPU_SIM_DEVICE_DIR", "/var/run/kindgpu/sim-gpus"),
		plan:      plan,
		driver:    Driver{Version: env("KINDGPU_SIM_DRIVER_VERSION", "580.0.0-simulated"), CUDAVersion: env("KINDGPU_SIM_CUDA_DRIVER_VERSION", "13.0")},
		cdiRoot:   env("CDI_ROOT", "/var/run/cdi"),
		shareDir:  env("KINDGPU_SIM_SHARE_DIR", "/var/lib/kindgpu-sim-dra"),
		sources:   env("KINDGPU_SIM_SOURCES", "/opt/kindgpu"),
	}, nil
}

// nodeGPUs are this node's GPUs, by device name; GPUs the plan lacks are left out, and logged.
func nodeGPUs(s settings) ([]GPU, error) {
	uuids, err := Discover(s.deviceDir)
	if err != nil {
		return nil, fmt.Errorf("listing the simulated GPUs in %s: %w", s.deviceDir, err)
	}
	gpus, unknown := NodeGPUs(s.plan, uuids)
	for _, uuid := range unknown {
		klog.InfoS("not publishing a GPU the plan does not describe", "uuid", uuid)
	}
	return gpus, nil
}

// install copies the fake nvidia-smi and its busybox where CDI mounts them from, atomically.
func install(s settings) error {
	if err := os.MkdirAll(s.shareDir, 0o755); err != nil {
		return err
	}
	for source, target := range map[string]string{"nvidia-smi.sh": "nvidia-smi", "busybox": "busybox"} {
		in, err := os.Open(filepath.Join(s.sources, source))
		if err != nil {
			return err
		}
		staging := filepath.Join(s.shareDir, target+".new")
		out, err := os.OpenFile(staging, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
		if err == nil {
			_, err = io.Copy(out, in)
			err = errors.Join(err, out.Close())
		}
		in.Close()
		if err == nil {
			err = os.Rename(staging, filepath.Join(s.shareDir, target))
		}
		if err != nil {
			return fmt.Errorf("installing %s: %w", target, err)
		}
	}
	return nil
}

func run(ctx context.Context, s settings) error {
	if s.nodeName == "" {
		return errors.New("NODE_NAME is not set (the DaemonSet gives it from spec.nodeName)")
	}
	gpus, err := nodeGPUs(s)
	if err != nil {
		return err
	}
	if err := install(s); err != nil {
		return err
	}
	// The helper listens in kubelet's plugins directory, in a directory of the driver's own it does not make.
	for _, dir := range []string{s.cdiRoot, filepath.Join(kubeletplugin.KubeletPluginsDir, DriverName)} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	config, err := rest.InClusterConfig()
	if err != nil {
		return fmt.Errorf("reaching the API server: %w", err)
	}
	client, err := kubernetes.NewForConfig(config)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if err := ensureHealthDir(s.shareDir); err != nil {
		return err
	}
	d := &driver{nodeName: s.nodeName, gpus: map[string]GPU{}, cdiRoot: s.cdiRoot, shareDir: s.shareDir, cancel: cancel}
	d.setGPUs(gpus)
	helper, err := kubeletplugin.Start(ctx, d,
		kubeletplugin.KubeClient(client),
		kubeletplugin.NodeName(s.nodeName),
		kubeletplugin.DriverName(DriverName),
		kubeletplugin.HealthService(false),
	)
	if err != nil {
		return fmt.Errorf("starting the kubelet plugin: %w", err)
	}
	defer helper.Stop()
	// Publish, then again whenever the node's GPUs or kindgpu's faults change: a GPU whose file goes
	// (`invoke fault --remove-device`) is published no more, a GPU given an Xid is tainted.
	var published string
	for {
		faults := ReadFaults(filepath.Join(s.shareDir, FaultsFile))
		devices := Devices(gpus, s.driver, faults)
		state, _ := json.Marshal(devices)
		if string(state) != published {
			logFaults(gpus, faults)
			// One pool per node, named after it, as NVIDIA's driver names its pools.
			resources := resourceslice.DriverResources{Pools: map[string]resourceslice.Pool{
				s.nodeName: {Slices: []resourceslice.Slice{{Devices: devices}}}}}
			if err := helper.PublishResources(ctx, resources); err != nil {
				return fmt.Errorf("publishing the ResourceSlice: %w", err)
			}
			klog.InfoS("publishing", "driver", DriverName, "node", s.nodeName, "gpus", len(gpus), "devices", len(devices))
			published = string(state)
		}
		select {
		case <-ctx.Done():
			if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
				return cause
			}
			return nil
		case <-time.After(pollInterval):
		}
		if gpus, err = nodeGPUs(s); err != nil {
			return err
		}
		d.setGPUs(gpus)
	}
}

const pollInterval = 2 * time.Second

// logFaults says what NVIDIA's driver says of a failed GPU: a health event, then the taint, or its removal.
func logFaults(gpus []GPU, faults map[string]Fault) {
	for _, gpu := range gpus {
		fault, failed := faults[gpu.UUID]
		if !failed {
			continue
		}
		klog.Warningf("Received xid health event for device %s: Xid=%d", gpu.UUID, fault.Xid)
		if fault.Effect == "" {
			klog.Warningf("Device: %s is unhealthy, will be removed from ResourceSlice", gpu.UUID)
		} else {
			klog.Warningf("Republishing ResourceSlice: 1 device(s) tainted with %s=%q (effect=%s)",
				TaintKeyXID, strconv.FormatUint(fault.Xid, 10), fault.Effect)
		}
	}
}

func main() {
	klog.InitFlags(nil)
	s, err := loadSettings()
	if err == nil && len(os.Args) > 1 && os.Args[1] == "devices" {
		err = printDevices(s)
	} else if err == nil {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		err = run(ctx, s)
		stop()
		klog.InfoS("stopped")
	}
	if err != nil {
		klog.ErrorS(err, "kindgpu-sim-dra failed")
		klog.Flush()
		os.Exit(1)
	}
}

// printDevices prints the devices this node would publish, as JSON: what `kubectl get resourceslice`
// shows in spec.devices.
func printDevices(s settings) error {
	gpus, err := nodeGPUs(s)
	if err != nil {
		return err
	}
	var devices []any
	for _, gpu := range gpus {
		devices = append(devices, Device(gpu, s.driver))
	}
	out := json.NewEncoder(os.Stdout)
	out.SetIndent("", "  ")
	return out.Encode(devices)
}
