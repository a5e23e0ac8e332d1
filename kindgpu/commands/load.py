"""`invoke load IMAGE[,IMAGE...]`: images from the host's Docker into the cluster's nodes
(kindgpu.load), and what went where."""

from __future__ import annotations

from .. import console, flags, load as loading
from ..report import Reporter


def run(images: str, config_file, checked: dict, *, workers=None, as_json: bool = False) -> None:
    listed, numbers = loading.parse_images(images), loading.parse_worker_numbers(workers)
    cluster = flags.resolve(config_file, checked)["name"]
    show(loading.load(cluster, listed, Reporter(quiet=as_json), workers=numbers), as_json)


def show(results, as_json=False):
    if as_json:
        console.print_json({"images": [r.to_dict() for r in results]})
        return
    for r in results:
        where = f"loaded into {', '.join(r.loaded)}" if r.loaded else "loaded nowhere"
        print(f"{r.image}: {where}" + (f"; already in {', '.join(r.present)}" if r.present else ""))
        if r.streamed is not None:
            s = r.streamed
            print(f"  {s.bytes / 1e9:.2f} GB into {len(r.loaded)} node(s) in {r.seconds:.1f}s "
                  f"({s.bytes * len(r.loaded) / 1e9 / max(r.seconds, 1e-9):.2f} GB/s placed; docker save "
                  f"{s.save_s:.1f}s before its first byte, streaming {s.stream_s:.1f}s, imports after it "
                  f"{s.finish_s:.1f}s)")
