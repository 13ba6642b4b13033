#!/usr/bin/env python3
"""Request rate by body size, raw echo versus worker, as a small dependency-free SVG.

Usage: scripts/plot_rate.py [rate_by_size.csv] [out.svg]
Defaults: target/bench/rate_by_size.csv -> target/bench/rate_by_size.svg.
The CSV is what `cargo bench --bench lockstep` writes (transport,size,mode,rounds,
requests_per_s,cpu_us_per_request,least_cpu_us_per_request,best_requests_per_s). Plots the
median rate over the alternating rounds (solid) and, when present, the best round (thin).
Log-scale axes; one colour per peer, tcp solid, inproc dashed.
"""
import csv
import math
import sys

src = sys.argv[1] if len(sys.argv) > 1 else "target/bench/rate_by_size.csv"
dst = sys.argv[2] if len(sys.argv) > 2 else "target/bench/rate_by_size.svg"

series = {}
best = {}
with open(src, newline="") as f:
    for row in csv.DictReader(f):
        if row["mode"] not in ("raw", "worker"):
            continue
        key = (row["transport"], row["mode"])
        series.setdefault(key, []).append((int(row["size"]), float(row["requests_per_s"])))
        if row.get("best_requests_per_s"):
            best.setdefault(key, []).append((int(row["size"]), float(row["best_requests_per_s"])))
for points in list(series.values()) + list(best.values()):
    points.sort()

W, H = 640, 400
left, right, top, bottom = 70, 160, 40, 50
pw, ph = W - left - right, H - top - bottom
sizes = sorted({s for pts in series.values() for s, _ in pts})
rates = [r for pts in list(series.values()) + list(best.values()) for _, r in pts]
xmin, xmax = math.log10(min(sizes)), math.log10(max(sizes))
ymin = 10 ** math.floor(math.log10(min(rates)))
ymax = 10 ** math.ceil(math.log10(max(rates)))


def x(size):
    return left + (math.log10(size) - xmin) / (xmax - xmin) * pw


def y(rate):
    return top + ph - (math.log10(rate) - math.log10(ymin)) / (math.log10(ymax) - math.log10(ymin)) * ph


def label(size):
    if size >= 1 << 20:
        return f"{size >> 20} MiB"
    if size >= 1 << 10:
        return f"{size >> 10} KiB"
    return f"{size} B"


style = {
    ("tcp", "raw"): ("#1f77b4", ""),
    ("tcp", "worker"): ("#d62728", ""),
    ("inproc", "raw"): ("#1f77b4", "5,4"),
    ("inproc", "worker"): ("#d62728", "5,4"),
}
out = [
    f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
    f'font-family="sans-serif" font-size="12">',
    f'<rect width="{W}" height="{H}" fill="white"/>',
    f'<text x="{left}" y="22" font-size="14">Lockstep request rate by body size: raw DEALER echo vs worker</text>',
]
decade = math.log10(ymin)
while 10 ** decade <= ymax * 1.0001:
    v = 10 ** decade
    out.append(f'<line x1="{left}" y1="{y(v):.1f}" x2="{left + pw}" y2="{y(v):.1f}" stroke="#ddd"/>')
    out.append(f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:,.0f}</text>')
    decade += 1
for s in sizes:
    out.append(f'<line x1="{x(s):.1f}" y1="{top}" x2="{x(s):.1f}" y2="{top + ph}" stroke="#eee"/>')
    out.append(f'<text x="{x(s):.1f}" y="{top + ph + 18}" text-anchor="middle">{label(s)}</text>')
out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>')
out.append(f'<text x="{left + pw / 2}" y="{H - 8}" text-anchor="middle">body size (log)</text>')
out.append(
    f'<text x="16" y="{top + ph / 2}" text-anchor="middle" '
    f'transform="rotate(-90 16 {top + ph / 2})">requests per second (log)</text>'
)
for i, (key, pts) in enumerate(sorted(series.items())):
    color, dash = style.get(key, ("#555", ""))
    d = " ".join(f"{x(s):.1f},{y(r):.1f}" for s, r in pts)
    extra = f' stroke-dasharray="{dash}"' if dash else ""
    out.append(f'<polyline points="{d}" fill="none" stroke="{color}" stroke-width="2"{extra}/>')
    for s, r in pts:
        out.append(f'<circle cx="{x(s):.1f}" cy="{y(r):.1f}" r="3" fill="{color}"/>')
    if key in best:
        d = " ".join(f"{x(s):.1f},{y(r):.1f}" for s, r in best[key])
        out.append(f'<polyline points="{d}" fill="none" stroke="{color}" stroke-width="0.8"{extra}/>')
    ly = top + 10 + i * 20
    lx = left + pw + 15
    out.append(f'<line x1="{lx}" y1="{ly}" x2="{lx + 25}" y2="{ly}" stroke="{color}" stroke-width="2"{extra}/>')
    out.append(f'<text x="{lx + 30}" y="{ly + 4}">{key[0]} {key[1]}</text>')
out.append(
    f'<text x="{left + pw + 15}" y="{top + 10 + len(series) * 20 + 10}" font-size="10">'
    f'thick: median round</text>'
)
out.append(
    f'<text x="{left + pw + 15}" y="{top + 10 + len(series) * 20 + 24}" font-size="10">'
    f'thin: best round</text>'
)
out.append("</svg>")
with open(dst, "w") as f:
    f.write("\n".join(out) + "\n")
print(f"wrote {dst}")
