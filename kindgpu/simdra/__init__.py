"""Simulated GPUs under Dynamic Resource Allocation: a DRA kubelet plugin (Go), its image and manifests."""
