package main

// What the plugin publishes and hands to pods, as pure functions of the plan's GPUs: the
// ResourceSlice devices (NVIDIA's names and attributes) and the CDI specs of prepared claims.

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	cdispec "tags.cncf.io/container-device-interface/specs-go"
)

const (
	// DriverName is NVIDIA's DRA driver's, so DeviceClasses and CEL selectors written for a
	// real cluster select these GPUs unchanged.
	DriverName = "gpu.nvidia.com"
	// gpuDeviceType is the `type` attribute of a full GPU (cmd/gpu-kubelet-plugin/types.go).
	gpuDeviceType = "gpu"
	// NVIDIA's CDI vendor and class for claims (cmd/gpu-kubelet-plugin/cdi.go: "k8s." + DriverName, "claim").
	cdiVendor  = "k8s." + DriverName
	cdiClass   = "claim"
	cdiKind    = cdiVendor + "/" + cdiClass
	cdiVersion = "0.6.0" // containerd 1.7 reads up to 0.6.0 and 2.x newer ones too

	// What a pod's container gets, as kindgpu's simulated device plugin gives it (simgpu/plugin.py).
	envVisibleDevices = "NVIDIA_VISIBLE_DEVICES"
	envSimGPUs        = "KINDGPU_SIM_GPUS" // a line per GPU: "<uuid> <minor> <bus id> <memory MiB> <name>"
	nvidiaSMIPath     = "/usr/bin/nvidia-smi"
	busyboxPath       = "/usr/local/kindgpu/bin/busybox" // the fake nvidia-smi's interpreter, on its first line
)

// GPU is one simulated GPU as kindgpu's plan describes it (KINDGPU_SIM_PLAN_GPUS, rendered by
// kindgpu/simdra/manifest.py).
type GPU struct {
	UUID         string `json:"uuid"`
	Minor        int    `json:"minor"`
	PCIBusID     string `json:"pci_bus_id"` // 0000:10:00.0, as NVML's device.GetPCIBusID gives it
	Name         string `json:"name"`
	MemoryMiB    int64  `json:"memory_mib"`
	Brand        string `json:"brand"`
	Architecture string `json:"architecture"`
	ComputeCap   string `json:"compute_cap"` // "9.0"
}

// Driver is what NVML reports for the whole node (KINDGPU_SIM_DRIVER_VERSION, KINDGPU_SIM_CUDA_DRIVER_VERSION).
type Driver struct {
	Version     string
	CUDAVersion string
}

// LoadPlan reads the plan's GPUs from their JSON list.
func LoadPlan(text string) (map[string]GPU, error) {
	var gpus []GPU
	if err := json.Unmarshal([]byte(text), &gpus); err != nil {
		return nil, fmt.Errorf("the plan's GPUs are not a JSON list of GPUs: %w", err)
	}
	plan := make(map[string]GPU, len(gpus))
	for _, gpu := range gpus {
		plan[gpu.UUID] = gpu
	}
	return plan, nil
}

// Discover lists this node's simulated GPUs: the files named by UUID in the sim-gpus directory
// (the /dev/null mounts kindgpu gives each worker), sorted.
func Discover(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var uuids []string
	for _, entry := range entries {
		if strings.HasPrefix(entry.Name(), "GPU-") {
			uuids = append(uuids, entry.Name())
		}
	}
	sort.Strings(uuids)
	return uuids, nil
}

// NodeGPUs are the plan's GPUs among this node's, by minor number, and the UUIDs the plan lacks.
func NodeGPUs(plan map[string]GPU, uuids []string) (gpus []GPU, unknown []string) {
	for _, uuid := range uuids {
		if gpu, ok := plan[uuid]; ok {
			gpus = append(gpus, gpu)
		} else {
			unknown = append(unknown, uuid)
		}
	}
	sort.Slice(gpus, func(i, j int) bool { return gpus[i].Minor < gpus[j].Minor })
	return gpus, unknown
}

// DeviceName is NVIDIA's canonical name of a full GPU: gpu-<minor> (GpuInfo.CanonicalName).
func DeviceName(gpu GPU) string {
	return fmt.Sprintf("gpu-%d", gpu.Minor)
}

// semver is what NVIDIA's driver publishes for a version: semver.MustParse(v).String() makes
// "9.0" into "9.0.0" and keeps a full x.y.z as it is.
func semver(version string) string {
	parts := strings.SplitN(version, "-", 2)
	core := parts[0]
	for strings.Count(core, ".") < 2 {
		core += ".0"
	}
	if len(parts) == 2 {
		return core + "-" + parts[1]
	}
	return core
}

// PCIeRoot is the standard pcieRoot attribute's value, pci<domain>:<bus>: the root complex sysfs
// shows a device under. A simulated GPU has no sysfs path, so each gets a root of its own, named
// after its own bus, as GPUs behind separate root ports on a real host have.
func PCIeRoot(busID string) string {
	parts := strings.Split(busID, ":")
	if len(parts) != 3 {
		return ""
	}
	return fmt.Sprintf("pci%s:%s", parts[0], parts[1])
}

func str(value string) resourceapi.DeviceAttribute {
	return resourceapi.DeviceAttribute{StringValue: &value}
}

func ver(value string) resourceapi.DeviceAttribute {
	value = semver(value)
	return resourceapi.DeviceAttribute{VersionValue: &value}
}

// Device is the ResourceSlice entry of one GPU, as NVIDIA's driver builds it (v25.12.0,
// cmd/gpu-kubelet-plugin/deviceinfo.go GetDevice and partitions.go PartDevAttributes): the same
// attribute names, kinds and formats, and the GPU's memory as capacity in bytes. Not published:
// addressingMode (NVIDIA publishes it only on coherent-memory systems, GH200 and GB200) and the
// NUMA node (NVIDIA's main branch, after v25.12.0, only where the GPU has one).
func Device(gpu GPU, driver Driver) resourceapi.Device {
	attributes := map[resourceapi.QualifiedName]resourceapi.DeviceAttribute{
		"type":                  str(gpuDeviceType),
		"uuid":                  str(gpu.UUID),
		"productName":           str(gpu.Name),
		"brand":                 str(gpu.Brand),
		"architecture":          str(gpu.Architecture),
		"cudaComputeCapability": ver(gpu.ComputeCap),
		"driverVersion":         ver(driver.Version),
		"cudaDriverVersion":     ver(driver.CUDAVersion),
		// k8s.io/dynamic-resource-allocation/deviceattribute's standard names.
		"resource.kubernetes.io/pciBusID": str(gpu.PCIBusID),
	}
	if root := PCIeRoot(gpu.PCIBusID); root != "" {
		attributes["resource.kubernetes.io/pcieRoot"] = str(root)
	}
	return resourceapi.Device{
		Name:       DeviceName(gpu),
		Attributes: attributes,
		Capacity: map[resourceapi.QualifiedName]resourceapi.DeviceCapacity{
			"memory": {Value: *resource.NewQuantity(gpu.MemoryMiB<<20, resource.BinarySI)},
		},
	}
}

// nvidiaSMIBusID is a bus id as nvidia-smi prints it: 00000000:10:00.0 (the plan has 0000:10:00.0).
func nvidiaSMIBusID(busID string) string {
	domain, rest, _ := strings.Cut(busID, ":")
	var value uint64
	fmt.Sscanf(domain, "%x", &value)
	return fmt.Sprintf("%08X:%s", value, strings.ToUpper(rest))
}

// SimGPUsEnv is $KINDGPU_SIM_GPUS for the fake nvidia-smi, in bus-id order, as NVML enumerates them.
func SimGPUsEnv(gpus []GPU) (visible string, lines string) {
	sorted := append([]GPU(nil), gpus...)
	sort.Slice(sorted, func(i, j int) bool { return nvidiaSMIBusID(sorted[i].PCIBusID) < nvidiaSMIBusID(sorted[j].PCIBusID) })
	var uuids, rows []string
	for _, gpu := range sorted {
		uuids = append(uuids, gpu.UUID)
		rows = append(rows, fmt.Sprintf("%s %d %s %d %s", gpu.UUID, gpu.Minor, nvidiaSMIBusID(gpu.PCIBusID), gpu.MemoryMiB, gpu.Name))
	}
	return strings.Join(uuids, ","), strings.Join(rows, "\n")
}

// cdiName is the part of a CDI spec's or device's name that makes it this claim's and request's.
func cdiName(claimUID, request string) string {
	return claimUID + "-" + strings.NewReplacer("/", "-", "_", "-").Replace(request)
}

// SpecFile is the CDI spec file of one request of a claim, named as the CDI library names
// transient specs (GenerateTransientSpecName: <vendor>-<class>_<name>).
func SpecFile(cdiRoot, claimUID, request string) string {
	return filepath.Join(cdiRoot, fmt.Sprintf("%s-%s_%s.json", cdiVendor, cdiClass, cdiName(claimUID, request)))
}

// ClaimSpecFiles matches every CDI spec file of a claim.
func ClaimSpecFiles(cdiRoot, claimUID string) string {
	return filepath.Join(cdiRoot, fmt.Sprintf("%s-%s_%s-*.json", cdiVendor, cdiClass, claimUID))
}

// CDIDeviceID is the CDI device the container runtime injects for one GPU of a request.
func CDIDeviceID(claimUID, request string, gpu GPU) string {
	return fmt.Sprintf("%s=%s-%s", cdiKind, cdiName(claimUID, request), DeviceName(gpu))
}

// RequestSpec is the CDI spec of one request of a claim: a device per GPU, and edits common to
// them that give the container what kindgpu's simulated device plugin gives it at Allocate:
// NVIDIA_VISIBLE_DEVICES with the GPUs' UUIDs, their description for the fake nvidia-smi, and the
// fake nvidia-smi with the static busybox that runs it, both read-only (shareDir holds them on the
// node). One spec per request, so a container given one request of a claim sees its GPUs only.
// A container given two claims (or two requests) of this driver gets the variables of the spec the
// runtime applies last, as NVIDIA_VISIBLE_DEVICES is one variable: the fake nvidia-smi then shows
// only those GPUs. Not yet handled.
func RequestSpec(claimUID, request string, gpus []GPU, shareDir string) cdispec.Spec {
	visible, lines := SimGPUsEnv(gpus)
	spec := cdispec.Spec{
		Version: cdiVersion,
		Kind:    cdiKind,
		ContainerEdits: cdispec.ContainerEdits{
			Env: []string{envVisibleDevices + "=" + visible, envSimGPUs + "=" + lines},
			Mounts: []*cdispec.Mount{
				{HostPath: filepath.Join(shareDir, "nvidia-smi"), ContainerPath: nvidiaSMIPath,
					Options: []string{"ro", "nosuid", "nodev", "bind"}},
				{HostPath: filepath.Join(shareDir, "busybox"), ContainerPath: busyboxPath,
					Options: []string{"ro", "nosuid", "nodev", "bind"}},
				// A directory, so what kindgpu writes there later shows in running containers.
				{HostPath: filepath.Join(shareDir, HealthDir), ContainerPath: healthMount,
					Options: []string{"ro", "nosuid", "nodev", "noexec", "bind"}},
			},
		},
	}
	for _, gpu := range gpus {
		// A CDI device must edit something: name the GPU, as NVIDIA's CDI spec names its device node.
		spec.Devices = append(spec.Devices, cdispec.Device{
			Name: cdiName(claimUID, request) + "-" + DeviceName(gpu),
			ContainerEdits: cdispec.ContainerEdits{
				Env: []string{fmt.Sprintf("KINDGPU_SIM_DEVICE_%s=%s", strings.ReplaceAll(DeviceName(gpu), "-", "_"), gpu.UUID)},
			},
		})
	}
	return spec
}
