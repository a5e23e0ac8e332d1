// Command kindnetd is the kindgpu test harness's minimal stand-in for kind's
// default CNI daemon (the image kind's default CNI manifest names). It is
// test-harness only, never part of the product, and uses only the standard
// library so it builds offline.
//
// Like kind's kindnetd it:
//   - writes a CNI config (ptp + host-local IPAM + portmap) for this node's
//     podCIDR to /etc/cni/net.d/10-kindnet.conflist,
//   - keeps a route to every other node's podCIDR via that node's InternalIP,
//   - masquerades pod traffic leaving the cluster's pod subnet.
//
// It polls the API server (in-cluster service account credentials) instead
// of watching.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

const (
	saDir       = "/var/run/secrets/kubernetes.io/serviceaccount"
	cniConfPath = "/etc/cni/net.d/10-kindnet.conflist"
	masqChain   = "KINDNET-MASQ-AGENT"
)

type node struct {
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		PodCIDR  string   `json:"podCIDR"`
		PodCIDRs []string `json:"podCIDRs"`
	} `json:"spec"`
	Status struct {
		Addresses []struct {
			Type    string `json:"type"`
			Address string `json:"address"`
		} `json:"addresses"`
	} `json:"status"`
}

type nodeList struct {
	Items []node `json:"items"`
}

type client struct {
	base  string
	token string
	http  *http.Client
}

func newClient() (*client, error) {
	host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		return nil, fmt.Errorf("KUBERNETES_SERVICE_HOST/PORT not set: not running in a pod")
	}
	ca, err := os.ReadFile(filepath.Join(saDir, "ca.crt"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("no certificates in %s/ca.crt", saDir)
	}
	return &client{
		base: "https://" + net.JoinHostPort(host, port),
		http: &http.Client{
			Timeout:   15 * time.Second,
			Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
		},
	}, nil
}

func (c *client) nodes() ([]node, error) {
	// The token is rotated by the kubelet: read it for every request.
	tok, err := os.ReadFile(filepath.Join(saDir, "token"))
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequest(http.MethodGet, c.base+"/api/v1/nodes", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("list nodes: HTTP %s", resp.Status)
	}
	var l nodeList
	if err := json.NewDecoder(resp.Body).Decode(&l); err != nil {
		return nil, err
	}
	return l.Items, nil
}

func internalIP(n node) string {
	for _, a := range n.Status.Addresses {
		if a.Type == "InternalIP" && net.ParseIP(a.Address).To4() != nil {
			return a.Address
		}
	}
	return ""
}

func podCIDR(n node) string {
	for _, c := range append([]string{n.Spec.PodCIDR}, n.Spec.PodCIDRs...) {
		if ip, _, err := net.ParseCIDR(c); err == nil && ip.To4() != nil {
			return c
		}
	}
	return ""
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func writeCNIConfig(subnet string) error {
	conf := map[string]any{
		"cniVersion": "0.4.0",
		"name":       "kindnet",
		"plugins": []any{
			map[string]any{
				"type":   "ptp",
				"ipMasq": false,
				"mtu":    1500,
				"ipam": map[string]any{
					"type":    "host-local",
					"dataDir": "/run/cni-ipam-state",
					"routes":  []any{map[string]any{"dst": "0.0.0.0/0"}},
					"ranges":  []any{[]any{map[string]any{"subnet": subnet}}},
				},
			},
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
		},
	}
	b, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return err
	}
	if old, err := os.ReadFile(cniConfPath); err == nil && string(old) == string(b) {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(cniConfPath), 0o755); err != nil {
		return err
	}
	tmp := cniConfPath + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	log.Printf("writing CNI config for pod subnet %s", subnet)
	return os.Rename(tmp, cniConfPath)
}

func ensureMasquerade(podSubnet string) error {
	if podSubnet == "" {
		return nil
	}
	// -N fails when the chain exists: that is fine.
	_ = exec.Command("iptables", "-w", "-t", "nat", "-N", masqChain).Run()
	if exec.Command("iptables", "-w", "-t", "nat", "-C", "POSTROUTING", "-j", masqChain).Run() != nil {
		if err := run("iptables", "-w", "-t", "nat", "-A", "POSTROUTING", "-j", masqChain); err != nil {
			return err
		}
	}
	rule := []string{"-s", podSubnet, "!", "-d", podSubnet, "-m", "addrtype", "!", "--dst-type", "LOCAL", "-j", "MASQUERADE"}
	if exec.Command("iptables", append([]string{"-w", "-t", "nat", "-C", masqChain}, rule...)...).Run() != nil {
		return run("iptables", append([]string{"-w", "-t", "nat", "-A", masqChain}, rule...)...)
	}
	return nil
}

func sync(c *client, self, hostIP, podSubnet string) error {
	nodes, err := c.nodes()
	if err != nil {
		return err
	}
	var errs []string
	for _, n := range nodes {
		cidr, ip := podCIDR(n), internalIP(n)
		if cidr == "" {
			continue
		}
		if n.Metadata.Name == self || (self == "" && ip == hostIP) {
			if err := writeCNIConfig(cidr); err != nil {
				errs = append(errs, err.Error())
			}
			continue
		}
		if ip == "" {
			continue
		}
		if err := run("ip", "route", "replace", cidr, "via", ip); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if err := ensureMasquerade(podSubnet); err != nil {
		errs = append(errs, err.Error())
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

func main() {
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	self := os.Getenv("NODE_NAME")
	if self == "" {
		// hostNetwork pod: the hostname is the node's name in kind.
		self, _ = os.Hostname()
	}
	hostIP, podSubnet := os.Getenv("HOST_IP"), os.Getenv("POD_SUBNET")
	log.Printf("kindnetd (kindgpu harness) node=%s hostIP=%s podSubnet=%s", self, hostIP, podSubnet)
	c, err := newClient()
	if err != nil {
		log.Fatal(err)
	}
	for {
		if err := sync(c, self, hostIP, podSubnet); err != nil {
			log.Printf("sync: %v", err)
			time.Sleep(2 * time.Second)
			continue
		}
		time.Sleep(10 * time.Second)
	}
}
