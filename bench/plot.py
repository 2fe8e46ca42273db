"""The PNG of cost against size: per-event cost of publish, process and rebuild (with their
baselines) and the per-query audit latency, against the number of events in the ledger.

    python -m bench.plot [bench/results/summary.json] [bench/results/scaling.png]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
STYLE = {
    "publish": ("tab:blue", "-", "o"),
    "process": ("tab:red", "-", "o"),
    "process, 2 workers": ("tab:orange", "-", "s"),
    "process baseline (bare Faust)": ("tab:red", ":", "x"),
    "rebuild": ("tab:green", "-", "o"),
    "rebuild baseline (fetch + decode)": ("tab:green", ":", "x"),
}


def plot(series: dict[str, Any], path: Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    def events(x: float, _: object) -> str:
        return f"{x / 1e6:g}M" if x >= 1e6 else f"{x / 1e3:g}k" if x >= 1e3 else f"{x:g}"

    plain = FuncFormatter(lambda y, _: f"{y:g}")
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    for name, s in series.items():
        if "wall_us_per_event" not in s:
            continue
        color, line, marker = STYLE.get(name, ("gray", "-", "."))
        left.plot(s["sizes"], s["wall_us_per_event"], line, color=color, marker=marker,
                  label=f"{name} (k={s['k']:.2f})")
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xticks(next(iter(series.values()))["sizes"])
    left.xaxis.set_major_formatter(FuncFormatter(events))
    left.xaxis.set_minor_formatter(FuncFormatter(lambda *_: ""))
    left.yaxis.set_major_formatter(plain)
    left.yaxis.set_minor_formatter(plain)
    left.set_xlabel("events in the ledger (10 per subject)")
    left.set_ylabel("wall time per event (µs, median)")
    left.set_title("publish / process / rebuild: cost per event\n(flat = linear total)")
    left.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=8)

    audit = series.get("audit (consent per subject)")
    if audit:
        right.plot(audit["sizes"], audit["p50_ms"], "-o", color="tab:purple",
                   label=f"consent at T, projection p50 (k={audit['k']:.2f})")
        right.plot(audit["sizes"], audit["p99_ms"], "--o", color="tab:purple",
                   label="consent at T, projection p99")
        right.set_xscale("log")
        right.set_yscale("log")
        right.set_xticks(audit["sizes"])
        right.xaxis.set_major_formatter(FuncFormatter(events))
        right.xaxis.set_minor_formatter(FuncFormatter(lambda *_: ""))
        right.yaxis.set_major_formatter(plain)
        right.yaxis.set_minor_formatter(plain)
        right.set_xlabel("events in the ledger")
        right.set_ylabel("ms per query")
        right.set_title("audit per subject (flat = does not grow with the log)")
        right.grid(True, which="both", alpha=0.3)
        scans = audit.get("log_scan_seconds")
        if scans:
            twin = right.twinx()
            twin.plot(audit["sizes"], [s * 1000 for s in scans], ":x", color="gray",
                      label=f"same answer from a log scan (k={audit['k_log_scan']:.2f})")
            twin.set_yscale("log")
            twin.yaxis.set_major_formatter(plain)
            twin.yaxis.set_minor_formatter(plain)
            twin.set_ylabel("log scan, ms per subject", color="gray")
            lines = right.get_legend_handles_labels()
            more = twin.get_legend_handles_labels()
            right.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8, loc="best")
        else:
            right.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("summary", nargs="?", default=str(RESULTS / "summary.json"))
    p.add_argument("png", nargs="?", default=str(RESULTS / "scaling.png"))
    args = p.parse_args(argv)
    summary = json.loads(Path(args.summary).read_text())
    print(plot(summary["scaling"]["series"], Path(args.png), summary.get("title", "")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
