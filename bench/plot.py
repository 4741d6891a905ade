"""The PNG of the latency distribution (``bench/results/latency.png``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: render to a file

import matplotlib.pyplot as plt


def latency_png(result: dict[str, Any], path: Path) -> None:
    total = [v * 1000 for v in result["samples_total_s"]]
    own = [v * 1000 for v in result["samples_own_s"]]
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    floor_ms = result["poll_floor_s"] * 1000
    left.hist(total, bins=60, color="#4c72b0")
    left.axvline(floor_ms + 100, color="#c44e52", linestyle="--", label=f"target p99 {floor_ms + 100:.0f} ms")
    left.axvline(result["total"]["p99_ms"], color="black", label=f"p99 {result['total']['p99_ms']} ms")
    left.set(title="flip → webhook received (total)", xlabel="ms", ylabel="changes")
    left.legend()
    right.hist(own, bins=60, color="#55a868")
    right.axvline(50, color="#c44e52", linestyle="--", label="target p99 50 ms")
    right.axvline(result["own_part"]["p99_ms"], color="black", label=f"p99 {result['own_part']['p99_ms']} ms")
    right.set(
        title="poll that saw it → webhook received (the bridge's own part)", xlabel="ms", ylabel="changes"
    )
    right.legend()
    figure.suptitle(
        f"{result['observed_flips']} observed changes of {result['bulks']} watched bulks, "
        f"poll floor {result['poll_floor_s']} s"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
