"""Grouped horizontal bar charts as standalone SVG (no plotting library needed), for the
bench scripts' reports: one group per metric, one bar per side, each bar labelled with
its value."""

from xml.sax.saxutils import escape

COLORS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860"]


def bars(title, groups, sides, unit_of, path):
    """groups: [(metric, {side: value})]; unit_of(metric) -> unit text; writes `path`."""
    bar_h, gap, plot_w = 18, 14, 420
    # Room for the longest side name (about 7 px a character at this size).
    label_w = max(230, 30 + 7 * max((len(s) for s in sides), default=0))
    rows = sum(len(sides) for _ in groups)
    height = 60 + rows * bar_h + len(groups) * (gap + 22)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + plot_w + 120}" '
           f'height="{height}" font-family="sans-serif" font-size="12">',
           f'<text x="10" y="22" font-size="15" font-weight="bold">{escape(title)}</text>']
    y = 40
    for metric, values in groups:
        top = max(values.values()) or 1
        out.append(f'<text x="10" y="{y + 14}" font-weight="bold">{escape(metric)} '
                   f'({escape(unit_of(metric))})</text>')
        y += 22
        for i, side in enumerate(sides):
            value = values.get(side)
            if value is None:
                continue
            w = max(1, int(plot_w * value / top))
            out.append(f'<text x="20" y="{y + 13}">{escape(side)}</text>')
            out.append(f'<rect x="{label_w}" y="{y + 2}" width="{w}" height="{bar_h - 4}" '
                       f'fill="{COLORS[i % len(COLORS)]}"/>')
            out.append(f'<text x="{label_w + w + 6}" y="{y + 13}">{value:,.2f}</text>')
            y += bar_h
        y += gap
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def round_ticks(lo, hi):
    """About five ticks between lo and hi at a step of 1, 2 or 5 times a power of 10."""
    import math
    rough = (hi - lo) / 5
    power = 10 ** math.floor(math.log10(rough))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= rough)
    first = math.ceil(lo / step)
    return [round(k * step, 10) for k in range(first, math.floor(hi / step) + 1)]


def lines(title, series, x_label, y_label, path, x_log=False, y_max=None):
    """series: [(name, [(x, y)])], drawn as polylines on shared axes; x_log: a log-10 x
    axis (latencies); writes `path`."""
    import math
    left, top, plot_w, plot_h = 60, 40, 520, 300
    legend_w = max(260, 60 + 7 * max((len(name) for name, _ in series), default=0))
    points = [p for _, ps in series for p in ps]
    if not points:
        return
    fx = (lambda x: math.log10(max(x, 1e-6))) if x_log else (lambda x: x)
    xs = [fx(x) for x, _ in points]
    x_lo, x_hi = min(xs), max(xs)
    if x_log:
        x_lo, x_hi = math.floor(x_lo), math.ceil(x_hi)
    elif x_lo >= 0:
        x_lo = 0  # time and counts read best from zero
    x_hi = x_hi if x_hi > x_lo else x_lo + 1
    y_hi = y_max if y_max is not None else (max(y for _, y in points) or 1)

    def px(x):
        return left + plot_w * (fx(x) - x_lo) / (x_hi - x_lo)

    def py(y):
        return top + plot_h - plot_h * y / y_hi

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + plot_w + legend_w}" '
           f'height="{top + plot_h + 50}" font-family="sans-serif" font-size="12">',
           f'<text x="10" y="22" font-size="15" font-weight="bold">{escape(title)}</text>',
           f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999"/>']
    ticks = ([10 ** e for e in range(int(x_lo), int(x_hi) + 1)] if x_log
             else round_ticks(x_lo, x_hi))
    for t in ticks:
        x = px(t)
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + plot_h}" stroke="#eee"/>')
        out.append(f'<text x="{x:.1f}" y="{top + plot_h + 16}" text-anchor="middle">{t:g}</text>')
    for i in range(6):
        y = y_hi * i / 5
        out.append(f'<text x="{left - 6}" y="{py(y) + 4:.1f}" text-anchor="end">{y:g}</text>')
    out.append(f'<text x="{left + plot_w / 2}" y="{top + plot_h + 36}" text-anchor="middle">'
               f'{escape(x_label)}</text>')
    out.append(f'<text x="14" y="{top + plot_h / 2}" transform="rotate(-90 14 {top + plot_h / 2})" '
               f'text-anchor="middle">{escape(y_label)}</text>')
    for i, (name, ps) in enumerate(series):
        color = COLORS[i % len(COLORS)]
        coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in ps)
        dash = ' stroke-dasharray="5,3"' if i >= len(COLORS) else ""
        out.append(f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="1.6"{dash}/>')
        ly = top + 14 + i * 18
        out.append(f'<line x1="{left + plot_w + 14}" y1="{ly - 4}" x2="{left + plot_w + 34}" '
                   f'y2="{ly - 4}" stroke="{color}" stroke-width="2"{dash}/>')
        out.append(f'<text x="{left + plot_w + 40}" y="{ly}">{escape(name)}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
