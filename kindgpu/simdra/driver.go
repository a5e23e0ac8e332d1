package main

// The kubelet side: NodePrepareResources writes a CDI spec per request of a claim and hands kubelet
// its devices; NodeUnprepareResources removes them. Kubernetes' kubeletplugin helper does the gRPC,
// the registration with kubelet and the claims' lookup.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/dynamic-resource-allocation/kubeletplugin"
	"k8s.io/klog/v2"
)

type driver struct {
	nodeName string
	mu       sync.Mutex
	gpus     map[string]GPU // this node's, by device name: setGPUs, gpu
	cdiRoot  string
	shareDir string
	cancel   context.CancelCauseFunc
}

var _ kubeletplugin.DRAPlugin = (*driver)(nil)

// setGPUs says which GPUs the node has now; claims are prepared against them.
func (d *driver) setGPUs(gpus []GPU) {
	byName := make(map[string]GPU, len(gpus))
	for _, gpu := range gpus {
		byName[DeviceName(gpu)] = gpu
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.gpus = byName
}

func (d *driver) gpu(name string) (GPU, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	gpu, ok := d.gpus[name]
	return gpu, ok
}

func (d *driver) PrepareResourceClaims(ctx context.Context, claims []*resourceapi.ResourceClaim) (map[types.UID]kubeletplugin.PrepareResult, error) {
	results := make(map[types.UID]kubeletplugin.PrepareResult, len(claims))
	for _, claim := range claims {
		results[claim.UID] = d.prepare(ctx, claim)
	}
	return results, nil
}

func (d *driver) prepare(ctx context.Context, claim *resourceapi.ResourceClaim) kubeletplugin.PrepareResult {
	if claim.Status.Allocation == nil {
		return kubeletplugin.PrepareResult{Err: fmt.Errorf("claim %s/%s is not allocated", claim.Namespace, claim.Name)}
	}
	byRequest := map[string][]GPU{}
	var order []string
	for _, result := range claim.Status.Allocation.Devices.Results {
		if result.Driver != DriverName {
			continue
		}
		gpu, ok := d.gpu(result.Device)
		if result.Pool != d.nodeName || !ok {
			return kubeletplugin.PrepareResult{Err: fmt.Errorf("claim %s/%s was given %s/%s, which is not a GPU of node %s",
				claim.Namespace, claim.Name, result.Pool, result.Device, d.nodeName)}
		}
		if _, seen := byRequest[result.Request]; !seen {
			order = append(order, result.Request)
		}
		byRequest[result.Request] = append(byRequest[result.Request], gpu)
	}
	var devices []kubeletplugin.Device
	for _, request := range order {
		gpus := byRequest[request]
		spec := RequestSpec(string(claim.UID), request, gpus, d.shareDir)
		if err := writeJSON(SpecFile(d.cdiRoot, string(claim.UID), request), spec); err != nil {
			return kubeletplugin.PrepareResult{Err: fmt.Errorf("writing the CDI spec of claim %s/%s: %w", claim.Namespace, claim.Name, err)}
		}
		for _, gpu := range gpus {
			devices = append(devices, kubeletplugin.Device{
				Requests:     []string{request},
				PoolName:     d.nodeName,
				DeviceName:   DeviceName(gpu),
				CDIDeviceIDs: []string{CDIDeviceID(string(claim.UID), request, gpu)},
			})
		}
		klog.FromContext(ctx).Info("prepared", "claim", klog.KObj(claim), "request", request, "gpus", len(gpus))
	}
	return kubeletplugin.PrepareResult{Devices: devices}
}

func (d *driver) UnprepareResourceClaims(ctx context.Context, claims []kubeletplugin.NamespacedObject) (map[types.UID]error, error) {
	results := make(map[types.UID]error, len(claims))
	for _, claim := range claims {
		files, _ := filepath.Glob(ClaimSpecFiles(d.cdiRoot, string(claim.UID)))
		var failed error
		for _, file := range files {
			if err := os.Remove(file); err != nil && !errors.Is(err, os.ErrNotExist) {
				failed = errors.Join(failed, err)
			}
		}
		results[claim.UID] = failed
		klog.FromContext(ctx).Info("unprepared", "claim", claim.String(), "specs", len(files))
	}
	return results, nil
}

func (d *driver) HandleError(ctx context.Context, err error, msg string) {
	klog.FromContext(ctx).Error(err, msg)
	if !errors.Is(err, kubeletplugin.ErrRecoverable) {
		d.cancel(fmt.Errorf("%s: %w", msg, err))
	}
}

// WatchHealthStatus: simulated GPUs never fail (kubeletplugin.HealthService(false) keeps kubelet from asking).
func (d *driver) WatchHealthStatus(ctx context.Context, reports chan<- kubeletplugin.DeviceHealthReport) error {
	<-ctx.Done()
	return nil
}

// writeJSON writes a file whole or not at all: the container runtime may read it at any time.
func writeJSON(path string, value any) error {
	data, err := json.MarshalIndent(value, "", "  ")
	if err != nil {
		return err
	}
	staging := path + ".tmp"
	if err := os.WriteFile(staging, append(data, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(staging, path)
}
