"""Draw the dashboard's panels from raw /metrics scrapes, without Prometheus or Grafana.

    python tools/dashboard_preview.py --out DIR SCRAPE [SCRAPE ...] [--interval 15]

Each SCRAPE is one snapshot of the operator's /metrics (text exposition format), in time order,
for example from `curl -s localhost:9090/metrics > scrape-$(date +%s).txt` during a demo run. A
first line `# scrape_time <unix seconds>` gives its time; otherwise snapshots are --interval
seconds apart. Writes one PNG per panel and `dashboard.png` with all of them, laid out like the
dashboard (tools/dashboard.py). Each query's series come from its `Preview`: gauges as they are,
timestamp gauges as ages, counter increases and histogram quantiles between consecutive scrapes.
"""

from __future__ import annotations

import argparse
import itertools
import math
import re
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tools.dashboard import PANELS, Panel, Preview, Target

Labels = tuple[tuple[str, str], ...]
SCRAPE_TIME = re.compile(r"^#\s*scrape_time\s+([0-9.]+)\s*$", re.MULTILINE)


@dataclass
class Scrape:
    time: float
    samples: dict[str, list[tuple[dict[str, str], float]]]  # sample name -> (labels, value)

    def series(self, name: str) -> list[tuple[dict[str, str], float]]:
        return self.samples.get(name, [])


def parse_scrape(text: str, default_time: float) -> Scrape:
    match = SCRAPE_TIME.search(text)
    samples: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name].append((dict(sample.labels), float(sample.value)))
    return Scrape(float(match.group(1)) if match else default_time, dict(samples))


def load_scrapes(paths: Sequence[Path], interval: float) -> list[Scrape]:
    scrapes = [parse_scrape(p.read_text(), i * interval) for i, p in enumerate(paths)]
    return sorted(scrapes, key=lambda s: s.time)


def _key(labels: dict[str, str], by: tuple[str, ...]) -> Labels:
    return tuple((k, labels.get(k, "")) for k in by)


def _matches(labels: dict[str, str], where: tuple[tuple[str, str], ...]) -> bool:
    return all(labels.get(k) == v for k, v in where)


def _grouped(scrape: Scrape, name: str, preview: Preview) -> dict[Labels, float]:
    sums: dict[Labels, float] = defaultdict(float)
    for labels, value in scrape.series(name):
        if _matches(labels, preview.where):
            sums[_key(labels, preview.by)] += value
    return dict(sums)


def _quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Prometheus' histogram_quantile over (upper bound, cumulative count) pairs."""
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] <= 0:
        return math.nan
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if math.isinf(upper):
                return lower
            return lower + (upper - lower) * (rank - below) / max(count - below, 1e-12)
        lower, below = upper, count
    return lower


Series = dict[Labels, list[tuple[float, float]]]


def evaluate(preview: Preview, scrapes: Sequence[Scrape]) -> Series:
    """The (time, value) points of each series that a preview describes."""
    out: Series = defaultdict(list)
    if preview.kind in ("value", "age"):
        for scrape in scrapes:
            for key, value in _grouped(scrape, preview.metric, preview).items():
                if preview.kind == "value":
                    out[key].append((scrape.time, value))
                elif value > 0:
                    out[key].append((scrape.time, scrape.time - value))
    elif preview.kind == "increase":
        name = preview.metric  # counters are exposed as <name>_total already
        for before, after in itertools.pairwise(scrapes):
            old = _grouped(before, name, preview)
            for key, value in _grouped(after, name, preview).items():
                delta = value - old.get(key, 0.0)
                out[key].append((after.time, value if delta < 0 else delta))  # reset
    else:
        by = (*preview.by, "le")
        bucket_preview = Preview("value", preview.metric, by, preview.where)
        for before, after in itertools.pairwise(scrapes):
            old = _grouped(before, f"{preview.metric}_bucket", bucket_preview)
            groups: dict[Labels, list[tuple[float, float]]] = defaultdict(list)
            for key, value in _grouped(after, f"{preview.metric}_bucket", bucket_preview).items():
                group, le = key[:-1], key[-1][1]
                groups[group].append((float(le), value - old.get(key, 0.0)))
            for series, buckets in groups.items():
                value = _quantile(preview.quantile, buckets)
                if not math.isnan(value):
                    out[series].append((after.time, value))
    return dict(out)


def _legend(target: Target, key: Labels) -> str:
    labels = dict(key)
    return re.sub(r"\{\{(\w+)\}\}", lambda m: labels.get(m.group(1), ""), target.legend).strip()


def draw_panel(ax: Axes, panel: Panel, scrapes: Sequence[Scrape]) -> int:
    """Draw one panel; returns how many series it had."""
    start = scrapes[0].time if scrapes else 0.0
    drawn = 0
    latest: dict[str, float] = {}
    bottoms: dict[float, float] = defaultdict(float)  # bars stack, as the panel's stacking does
    for target in panel.targets:
        for key, points in sorted(evaluate(target.preview, scrapes).items()):
            if not points:
                continue
            drawn += 1
            label = _legend(target, key)
            latest[label] = points[-1][1]
            if panel.kind == "timeseries":
                xs = [t - start for t, _ in points]
                ys = [v for _, v in points]
                if panel.draw == "bars":
                    below = [bottoms[x] for x in xs]
                    width = max(1.0, _step(scrapes) * 0.8)
                    ax.bar(xs, ys, width=width, bottom=below, label=label, alpha=0.7)
                    for x, y in zip(xs, ys, strict=True):
                        bottoms[x] += y
                else:
                    ax.plot(xs, ys, marker=".", label=label)
    if panel.kind != "timeseries" and latest:
        names = list(latest)
        ax.barh(names, [latest[n] for n in names], color="tab:green")
        for i, name in enumerate(names):
            ax.text(latest[name], i, f" {_format(latest[name], panel.unit)}", va="center")
    elif panel.kind == "timeseries":
        ax.set_xlabel("seconds since first scrape")
        if drawn:
            ax.legend(fontsize="x-small", loc="upper left")
    ax.set_title(panel.title)
    if panel.unit in ("s", "bytes"):
        ax.set_ylabel(panel.unit if panel.kind == "timeseries" else "")
    if not drawn:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    return drawn


def _step(scrapes: Sequence[Scrape]) -> float:
    if len(scrapes) < 2:
        return 1.0
    return (scrapes[-1].time - scrapes[0].time) / (len(scrapes) - 1)


def _format(value: float, unit: str) -> str:
    if unit == "bytes":
        for suffix in ("B", "KiB", "MiB", "GiB"):
            if abs(value) < 1024 or suffix == "GiB":
                return f"{value:.0f} {suffix}" if suffix == "B" else f"{value:.1f} {suffix}"
            value /= 1024
    if unit == "s":
        return f"{value:.0f} s"
    return f"{value:g}"


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def render(scrapes: Sequence[Scrape], out: Path) -> dict[str, int]:
    """Write a PNG per panel and dashboard.png; returns series drawn per panel title."""
    out.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    for panel in PANELS:
        fig, ax = plt.subplots(figsize=(panel.width / 2, panel.height / 2))
        counts[panel.title] = draw_panel(ax, panel, scrapes)
        fig.tight_layout()
        fig.savefig(out / f"{_slug(panel.title)}.png", dpi=100)
        plt.close(fig)
    columns = 3
    rows = math.ceil(len(PANELS) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(18, 4 * rows))
    for ax, panel in zip(axes.flat, PANELS, strict=False):
        draw_panel(ax, panel, scrapes)
    for ax in list(axes.flat)[len(PANELS) :]:
        ax.axis("off")
    fig.suptitle("migrate-safe operator (preview from /metrics scrapes)")
    fig.tight_layout()
    fig.savefig(out / "dashboard.png", dpi=90)
    plt.close(fig)
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scrapes", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--interval", type=float, default=15.0)
    args = parser.parse_args(argv)
    counts = render(load_scrapes(args.scrapes, args.interval), args.out)
    for title, n in counts.items():
        print(f"{n:3d} series  {title}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
