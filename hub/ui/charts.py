"""Charts as inline SVG, drawn on the server (no script, nothing fetched by the browser).

Each function returns SVG markup (``markupsafe.Markup``) sized by ``viewBox``
so that it scales with the page. Text is escaped.
"""

from __future__ import annotations

import math

from markupsafe import Markup
from markupsafe import escape

COLOURS = {
    "red": "#d62728",
    "yellow": "#f2c500",
    "blue": "#1f77b4",
    "orange": "#ff7f0e",
    "green": "#2ca02c",
    "none": "#b0b0b0",
}
BAR = "#2b7bb9"
OVERDUE = "#c9302c"
SERIES = ["#2b7bb9", "#e07b00", "#2ca02c", "#9467bd", "#8c564b", "#d62728", "#17becf"]
# The dashboard's CJK font stack (the same list as body in static/dashboard.css): a
# font with Chinese glyphs first, so labels never fall back to boxes (tofu).
# Debian/Ubuntu: fonts-noto-cjk; macOS: PingFang; Windows: Microsoft YaHei.
FONT_STACK = (
    "'Noto Sans CJK SC', 'Source Han Sans SC', 'PingFang SC', 'Hiragino Sans GB', "
    "'Microsoft YaHei', 'WenQuanYi Micro Hei', sans-serif"
)
FONT = f'font-family="{FONT_STACK}" font-size="12"'


def _svg(width: int, height: int, body: list[str], title: str) -> Markup:
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="100%" role="img" aria-label="{escape(title)}" class="chart">'
        f"<title>{escape(title)}</title>{''.join(body)}</svg>"
    )


def _text_width(text: str) -> float:
    """Approximate width in pixels at 12 px: CJK characters are square, Latin ones narrower."""
    return sum(12.0 if ord(ch) > 0x2E80 else 6.6 for ch in text)


def fit(text: str, width: float) -> str:
    """``text`` cut with an ellipsis to fit ``width`` pixels (the full text goes in a title)."""
    if _text_width(text) <= width:
        return text
    out = ""
    for ch in text:
        if _text_width(out + ch + "…") > width:
            break
        out += ch
    return out + "…"


def hbar(
    rows: list[tuple[str, float, str, str | None]],
    title: str,
    maximum: float | None = None,
    colour: str = BAR,
) -> Markup:
    """Horizontal bars: ``(label, value, value text, link)``; ``maximum`` defaults to the largest."""
    width, label_w, row_h = 640, 260, 26
    height = max(1, len(rows)) * row_h + 10
    top = maximum or max((v for _l, v, _t, _h in rows), default=0) or 1
    body = []
    for n, (label, value, text, href) in enumerate(rows):
        y = 5 + n * row_h
        bar_w = max(0.0, (width - label_w - 70) * min(value, top) / top)
        bar = (
            f'<rect x="{label_w}" y="{y + 4}" width="{bar_w:.1f}" height="{row_h - 10}" '
            f'fill="{colour}"/>'
        )
        if href:
            bar = f'<a href="{escape(href)}">{bar}</a>'
        body.append(
            f'<text x="{label_w - 6}" y="{y + row_h / 2 + 4}" text-anchor="end" {FONT}>'
            f"<title>{escape(label)}</title>{escape(fit(label, label_w - 10))}</text>{bar}"
            f'<text x="{label_w + bar_w + 6:.1f}" y="{y + row_h / 2 + 4}" {FONT}>{escape(text)}</text>'
        )
    if not rows:
        body.append(f'<text x="10" y="20" {FONT}>—</text>')
    return _svg(width, height, body, title)


def donut(parts: list[tuple[str, str, float]], title: str) -> Markup:
    """A ring of ``(key, label, value)``; key picks the colour from :data:`COLOURS`."""
    width, height, cx, cy, r_out, r_in = 640, 220, 110, 110, 100, 58
    total = sum(v for _k, _l, v in parts)
    body = []
    angle = -math.pi / 2
    for key, _label, value in parts:
        if value <= 0 or total <= 0:
            continue
        sweep = 2 * math.pi * value / total
        if sweep >= 2 * math.pi - 1e-9:  # a full ring cannot be drawn as one arc
            body.append(
                f'<circle cx="{cx}" cy="{cy}" r="{(r_out + r_in) / 2}" fill="none" '
                f'stroke="{COLOURS.get(key, BAR)}" stroke-width="{r_out - r_in}"/>'
            )
            break
        end = angle + sweep
        large = 1 if sweep > math.pi else 0
        x1, y1 = cx + r_out * math.cos(angle), cy + r_out * math.sin(angle)
        x2, y2 = cx + r_out * math.cos(end), cy + r_out * math.sin(end)
        x3, y3 = cx + r_in * math.cos(end), cy + r_in * math.sin(end)
        x4, y4 = cx + r_in * math.cos(angle), cy + r_in * math.sin(angle)
        body.append(
            f'<path d="M{x1:.2f},{y1:.2f} A{r_out},{r_out} 0 {large} 1 {x2:.2f},{y2:.2f} '
            f'L{x3:.2f},{y3:.2f} A{r_in},{r_in} 0 {large} 0 {x4:.2f},{y4:.2f} Z" '
            f'fill="{COLOURS.get(key, BAR)}"/>'
        )
        angle = end
    for n, (key, label, value) in enumerate(parts):
        y = 30 + n * 26
        share = f" ({100 * value / total:.1f}%)" if total else ""
        body.append(
            f'<rect x="250" y="{y - 12}" width="16" height="16" fill="{COLOURS.get(key, BAR)}"/>'
            f'<text x="274" y="{y + 1}" {FONT}>{escape(label)}: {int(value)}{share}</text>'
        )
    return _svg(width, height, body, title)


def lines(periods: list[str], series: list[tuple[str, list[float | None]]], title: str) -> Markup:
    """Rates (0-100 %) over ``periods``, one line per ``(label, values)``."""
    width, height, left, right, top, bottom = 640, 260, 40, 250, 15, 30
    plot_w, plot_h = width - left - right, height - top - bottom
    body = [
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#888"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#888"/>',
    ]
    for pct in (0, 50, 100):
        y = top + plot_h * (1 - pct / 100)
        body.append(f'<text x="{left - 4}" y="{y + 4}" text-anchor="end" {FONT}>{pct}%</text>')
    step = plot_w / max(1, len(periods) - 1)
    xs = [left + (step * i if len(periods) > 1 else plot_w / 2) for i in range(len(periods))]
    for x, period in zip(xs, periods, strict=True):
        body.append(
            f'<text x="{x:.1f}" y="{height - 10}" text-anchor="middle" {FONT}>{escape(period)}</text>'
        )
    for n, (label, values) in enumerate(series):
        colour = SERIES[n % len(SERIES)]
        points = [
            (x, top + plot_h * (1 - min(v, 100) / 100))
            for x, v in zip(xs, values, strict=True)
            if v is not None
        ]
        if len(points) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            body.append(
                f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2.5"/>'
            )
        for x, y in points:
            body.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{colour}"/>')
        ly = top + 12 + n * 20
        body.append(
            f'<rect x="{width - right + 12}" y="{ly - 10}" width="12" height="12" fill="{colour}"/>'
            f'<text x="{width - right + 30}" y="{ly}" {FONT}><title>{escape(label)}</title>'
            f"{escape(fit(label, right - 34))}</text>"
        )
    return _svg(width, height, body, title)
