"""Server-side SVG charts: escaping, scaling and edge cases."""

from __future__ import annotations

from lxml import etree

from hub.ui import charts

SVG = "{http://www.w3.org/2000/svg}"


def parse(markup) -> etree._Element:
    return etree.fromstring(str(markup).encode())


def test_hbar_scales_escapes_and_links():
    svg = parse(
        charts.hbar(
            [("<script>", 50.0, "50%", "/ui/gaps?rule=a&b=1"), ("full", 100.0, "100%", None)],
            "t",
            maximum=100,
        )
    )
    rects = svg.findall(f".//{SVG}rect")
    assert float(rects[1].get("width")) == 2 * float(rects[0].get("width"))
    assert svg.find(f".//{SVG}a").get("href") == "/ui/gaps?rule=a&b=1"
    texts = ["".join(t.itertext()) for t in svg.iter(f"{SVG}text")]
    assert any("<script>" in t for t in texts)  # escaped in the markup, text again when parsed


def test_long_labels_are_cut_with_the_full_text_as_title():
    label = "type 2 diabetes standardised management · face-to-face follow-up"
    svg = parse(charts.hbar([(label, 1.0, "1", None)], "t"))
    text = svg.find(f".//{SVG}text")
    assert text.find(f"{SVG}title").text == label
    assert text.find(f"{SVG}title").tail.endswith("…")


def test_donut_draws_one_segment_per_nonzero_part_and_a_full_ring():
    svg = parse(charts.donut([("red", "red", 1), ("green", "green", 3), ("blue", "blue", 0)], "t"))
    assert len(svg.findall(f".//{SVG}path")) == 2
    ring = parse(charts.donut([("orange", "orange", 5)], "t"))
    assert ring.find(f".//{SVG}circle").get("stroke") == charts.COLOURS["orange"]


def test_lines_skip_missing_values():
    svg = parse(charts.lines(["2024", "2025"], [("a", [None, 50.0]), ("b", [20.0, 40.0])], "t"))
    assert len(svg.findall(f".//{SVG}polyline")) == 1  # "a" has one point only
    assert len(svg.findall(f".//{SVG}circle")) == 3


def test_pages_and_charts_declare_one_cjk_font_stack():
    from pathlib import Path

    import hub.ui

    css = (Path(hub.ui.__file__).parent / "static" / "dashboard.css").read_text(encoding="utf-8")
    assert f"body {{ font-family: {charts.FONT_STACK};" in css
    assert charts.FONT_STACK.startswith("'Noto Sans CJK SC'")
    svg = parse(charts.hbar([("高血压", 50.0, "50%", None)], "t", maximum=100))
    assert {t.get("font-family") for t in svg.iter(f"{SVG}text")} == {charts.FONT_STACK}
