"""Simulated GPUs: a kubelet device plugin, its fake nvidia-smi, image and manifest."""
