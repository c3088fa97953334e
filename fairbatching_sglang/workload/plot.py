"""`plot_trace`: arrivals per second and input/output length CDFs in one PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fairbatching_sglang.workload.stats import per_second_counts
from fairbatching_sglang.workload.table import RequestTable


def plot_trace(table: RequestTable, out: str | Path, title: str | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on servers and in CI
    import matplotlib.pyplot as plt

    p = Path(out)
    fig, (ax_rate, ax_cdf) = plt.subplots(1, 2, figsize=(12, 4))
    counts = per_second_counts(table.arrival_s)
    ax_rate.plot(np.arange(counts.size), counts, lw=0.6)
    ax_rate.axhline(table.mean_rate_rps, color="k", ls="--", lw=0.8, label="mean rate")
    ax_rate.set(xlabel="time since first arrival (s)", ylabel="arrivals per second")
    ax_rate.legend(loc="upper right")
    for arr, label in (
        (table.input_tokens, "input tokens"),
        (table.output_tokens, "output tokens"),
    ):
        x = np.sort(arr)
        ax_cdf.plot(x, np.arange(1, x.size + 1) / x.size, label=label)
    ax_cdf.set(xscale="log", xlabel="tokens", ylabel="CDF")
    ax_cdf.legend(loc="lower right")
    fig.suptitle(title or Path(table.source or "trace").name)
    fig.tight_layout()
    fig.savefig(p, dpi=100)
    plt.close(fig)
    return p
