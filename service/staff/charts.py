"""Charts of the staff site, drawn server-side as SVG by pygal (no hand-drawn markup).

The SVG is served as an image of its own (``image/svg+xml``) and shown with ``<img>``: a
browser runs no script of an image, and the page keeps a text table of the same figures
beside it for screen readers and for copying. pygal's own script links are left out
(``js=[]``): nothing is fetched from outside.
"""

from __future__ import annotations

import pygal
from pygal.style import Style

from service.staff.incidents import Funnel

# Readable on a laptop screen, and printable in grey: one dark series on white.
FUNNEL_STYLE = Style(
    background="white",
    plot_background="white",
    foreground="#1f2937",
    foreground_strong="#111827",
    foreground_subtle="#6b7280",
    colors=("#1d4ed8",),
    font_family="system-ui, sans-serif",
    label_font_size=13,
    major_label_font_size=13,
    value_font_size=13,
    title_font_size=16,
)


def funnel_svg(funnel: Funnel, *, width: int = 720, height: int = 360) -> str:
    """The leak's funnel as a horizontal bar chart: one bar per stage, top to bottom in
    funnel order, each with its count printed. Returns the SVG document as text."""
    chart = pygal.HorizontalBar(
        js=[],
        disable_xml_declaration=True,
        style=FUNNEL_STYLE,
        width=width,
        height=height,
        explicit_size=True,
        show_legend=False,
        print_values=True,
        print_zeroes=True,
        min_scale=1,
        max_scale=6,
        show_minor_x_labels=False,
    )
    chart.title = f"Funnel of leak {funnel.leak}"
    stages = funnel.stages()
    # A horizontal bar chart draws its first value at the bottom: reversed, the funnel
    # reads from the top.
    chart.x_labels = [label for _, label, _ in reversed(stages)]
    chart.add("accounts", [count for _, _, count in reversed(stages)])
    svg: str = chart.render(is_unicode=True)
    return svg
