"""kindgpu: multi-node GPU Kubernetes clusters on one host, made with kind."""
