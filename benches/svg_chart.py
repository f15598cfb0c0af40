"""Grouped horizontal bar charts as standalone SVG (no plotting library needed), for the
bench scripts' reports: one group per metric, one bar per side, each bar labelled with
its value."""

from xml.sax.saxutils import escape

COLORS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860"]


def bars(title, groups, sides, unit_of, path):
    """groups: [(metric, {side: value})]; unit_of(metric) -> unit text; writes `path`."""
    bar_h, gap, label_w, plot_w = 18, 14, 230, 420
    rows = sum(len(sides) for _ in groups)
    height = 60 + rows * bar_h + len(groups) * (gap + 22) + 20 * len(sides)
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
