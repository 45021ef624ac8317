"""Darknet's layer table (index, type, filters, size/stride, input -> output, BFLOPs)."""
from __future__ import annotations


def fork_line(net) -> str:
    """Whose Darknet this table's numbers follow, and why (``fork=auto`` picks from the cfg)."""
    reason = f" ({net.net.fork_reason})" if net.net.fork_reason else ""
    return f"fork = {net.fork}{reason}"


def layer_table(net) -> str:
    """The table Darknet prints while it parses a cfg, after a line naming the resolved fork."""
    lines = [fork_line(net), "layer     filters    size              input                output"]
    for i, spec in enumerate(net.specs):
        src = spec.sources[0]
        inp = net.net_input_shape if src < 0 else net.specs[src].out
        flops = f"  {spec.flops / 1e9:5.3f} BFLOPs" if spec.flops else ""
        lines.append(f"{i:5d} {spec.label:<9s}{spec.detail:<22s}{inp}   ->  {spec.out}{flops}")
    lines.append(f"Total BFLOPs {total_bflops(net):.3f}")
    return "\n".join(lines)


def total_bflops(net) -> float:
    """The sum of the per-layer figures as Darknet prints them (``%5.3f``), which is how
    Darknet's published totals are formed (yolov3 at 416: 65.862; unrounded: 65.864)."""
    return round(sum(round(spec.flops / 1e9, 3) for spec in net.specs), 3)
