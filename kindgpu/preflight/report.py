"""Print a Report: a rich table for people, JSON for machines."""

from __future__ import annotations

import json

from .model import Status

# rich is imported where used: JSON output does not pay for it.

STYLE = {Status.PASS: "green", Status.WARN: "yellow", Status.FAIL: "bold red", Status.SKIP: "dim"}
MARK = {Status.PASS: "✓", Status.WARN: "!", Status.FAIL: "✗", Status.SKIP: "-"}


def write_json(report, out):
    json.dump(report.to_dict(), out, indent=2)
    out.write("\n")


def write_table(report, out):
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(file=out, highlight=False)
    if not console.is_terminal:  # a log or a pipe: room for UUIDs rather than 80 columns
        console.width = max(console.width, 132)
    req = report.request
    gpus = f"{req.simulate} simulated GPUs" if req.simulate else "real GPUs"
    console.print(
        f"Preflight for cluster [bold]{req.cluster_name}[/]: {req.workers} worker(s) × "
        f"{req.gpus} GPU(s), {gpus}"
    )
    for line in report.fixed:
        console.print(f"[cyan]fixed:[/] {line}")

    table = Table(show_edge=False, pad_edge=False, expand=False)
    table.add_column("Status", no_wrap=True)
    table.add_column("Check", no_wrap=True)
    table.add_column("Found", overflow="fold")
    for c in report.checks:
        table.add_row(Text(f"{MARK[c.status]} {c.status}", style=STYLE[c.status]), c.title,
                      Text(c.found))
    console.print(table)

    inv = report.inventory
    if inv is not None and inv.gpus:
        gt = Table(title="GPU inventory" + (" (simulated)" if inv.simulated else ""),
                   show_edge=False, pad_edge=False, title_justify="left")
        for col in ("GPU", "Minor", "Name", "UUID", "PCI bus", "Memory", "MIG"):
            gt.add_column(col, no_wrap=True)
        for g in inv.gpus:
            gt.add_row(str(g.index), "?" if g.minor is None else str(g.minor), g.name, g.uuid,
                       g.pci_bus_id, f"{g.memory_mib} MiB", g.mig_mode)
        console.print(gt)

    todo = [c for c in report.checks if c.status in (Status.FAIL, Status.WARN) and (c.fix or c.hint)]
    if todo:
        console.print("\n[bold]To fix:[/]")
        for c in todo:
            line = Text(f"{MARK[c.status]} {c.title}", style=STYLE[c.status])
            if c.hint:
                line.append(f": {c.hint}")
            console.print(line, soft_wrap=True)
            if c.fix:
                # soft_wrap: never break a command, so it stays copy-pasteable
                console.print(Text(f"    {c.fix}", style="bold"), soft_wrap=True)

    result = report.result
    summary = {
        Status.PASS: "this host can run the cluster",
        Status.WARN: "this host can run the cluster, with warnings",
        Status.FAIL: "this host cannot run the cluster yet: fix the FAIL lines first",
    }[result]
    console.print(Text(f"\n{result}: {summary} ({report.seconds:.2f}s)", style=STYLE[result]))
