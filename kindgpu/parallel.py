"""Per-node (or per-worker) work, all at once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor


def concurrently(fn, items):
    """Run fn on every item at once; return results in order, first error raised."""
    items = list(items)
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=min(16, len(items))) as pool:
        return list(pool.map(fn, items))
