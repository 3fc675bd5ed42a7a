"""The folium classes of geolab's offline maps: a map whose page loads nothing from the network.

:func:`folium_classes` builds, on first use (folium is a ``lab`` extra, imported then), the
``folium.Map`` subclass :class:`OfflineMap` (Leaflet's JS/CSS inlined, folium's CDN links left
out, ``save``/``_repr_html_`` checked by :func:`check_offline_html`) and the elements that
:func:`geolab.viz.maps.location_map` adds to it: a legend control, the location markers with their
popups (one compact data table and a loop, no jQuery) and the land outline (delta-encoded rings).

Page size: a notebook keeps every map's page in its output, so the markers and the land outline
are written as compact data that a few lines of JavaScript expand in the browser, instead of
folium's ~1 KB of script per marker and pretty-printed GeoJSON.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple, cast

from geolab.errors import UserError
from geolab.io import atomic_write_text
from geolab.viz.assets import leaflet_assets


class OfflineMapError(UserError, RuntimeError):
    """A map page would load something from the network although it was asked not to."""


class FoliumClasses(NamedTuple):
    """The folium classes of :func:`folium_classes`."""

    OfflineMap: Any
    Legend: Any
    LocationMarkers: Any
    LandOutline: Any


def js_data(obj: Any) -> str:
    """``obj`` (dicts, lists, strings, numbers, None) as a compact JavaScript literal for a ``<script>``.

    Strings are single-quoted: in a notebook the page sits in a ``srcdoc="..."`` attribute, where
    every double quote costs six bytes (``&quot;``) and a single quote one. ``</`` and ``<!--``
    are escaped, so no string can end the script element.
    """

    def literal(value: Any) -> str:
        if isinstance(value, str):
            return "'" + json.dumps(value)[1:-1].replace("'", "\\'") + "'"
        if isinstance(value, dict):
            return "{" + ",".join(f"{literal(str(k))}:{literal(v)}" for k, v in value.items()) + "}"
        if isinstance(value, (list, tuple)):
            return "[" + ",".join(literal(v) for v in value) + "]"
        return json.dumps(value)

    return literal(obj).replace("</", "<\\/").replace("<!--", "<\\u0021--")


def srcdoc_escape(page: str) -> str:
    """``page`` as the value of a double-quoted HTML attribute (``srcdoc="..."``).

    Only ``&`` and ``"`` need escaping there; ``html.escape`` would also turn every ``<``, ``>``
    and ``'`` of the page into five or six characters.
    """
    return page.replace("&", "&amp;").replace('"', "&quot;")


def delta_rings(rings: list[list[list[float]]]) -> list[list[int]]:
    """Rings of ``[lon, lat]`` points (degrees, 0.01 precision) as flat integer deltas in 1/100 degree.

    ``[[x0, y0], [x1, y1], ...]`` becomes ``[x0, y0, x1 - x0, y1 - y0, ...]`` (times 100): the
    land outline's ~12k points take about 77 KB instead of 214 KB of GeoJSON. The page's
    ``LandOutline`` script adds them up again.
    """
    out = []
    for ring in rings:
        pts = [(round(x * 100), round(y * 100)) for x, y in ring]
        flat = [pts[0][0], pts[0][1]]
        for (x0, y0), (x1, y1) in zip(pts[:-1], pts[1:]):
            flat += [x1 - x0, y1 - y0]
        out.append(flat)
    return out


def folium_classes() -> FoliumClasses:
    """OfflineMap, Legend, LocationMarkers and LandOutline, built on folium (imported lazily: a lab extra)."""
    global _CLASSES
    if _CLASSES is None:
        _CLASSES = FoliumClasses(_offline_map_class(), _legend_class(), _location_markers_class(),
                                 _land_outline_class())
    return _CLASSES


def _folium_template(source: str) -> Any:
    """A template of a folium element's script (folium's own class from 0.16 on, plain jinja2 before)."""
    try:
        from folium.template import Template  # noqa: PLC0415 - folium >= 0.16
    except ImportError:  # older folium renders plain jinja2 templates (our macros need only tojson)
        from jinja2 import Template  # noqa: PLC0415 - jinja2 comes with folium
    return Template(source)


def _offline_map_class() -> type:
    """The ``folium.Map`` subclass whose page loads nothing from the network."""
    import folium  # noqa: PLC0415 - folium is a lab extra
    from branca.element import Element, Figure  # noqa: PLC0415 - branca comes with folium
    from folium.elements import ElementAddToElement  # noqa: PLC0415 - folium is a lab extra

    class OfflineMap(folium.Map):
        """A folium map whose page loads nothing from the network.

        Leaflet's JS/CSS are inlined from a registry package; folium's other CDN links
        (jQuery, Bootstrap, Font Awesome, awesome-markers) are not written, so plugins that
        need them (``folium.Icon`` markers, for instance) are not supported offline.
        ``save``/``_repr_html_`` check that the page has no external ``src``/``href`` and raise
        :class:`OfflineMapError` if one slipped in.
        """

        def __init__(self, *args: Any, offline: bool = True, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.offline = offline
            if offline:
                # instance attributes: never mutate folium's class-level lists
                self.default_js = []
                self.default_css = []
                assets = leaflet_assets()
                js = assets.js().replace("</script", "<\\/script")
                cast("Figure", self.get_root()).header.add_child(
                    Element(f"<style>{assets.css()}</style>\n<script>{js}</script>"), name="leaflet_inline"
                )

        def offline_html(self) -> str:
            """The whole page as one string (checked for external loads when offline).

            Element ids are numbered in tree order instead of folium's random ones, so the
            same map gives the same bytes (diffable files, nbval-comparable notebook output).
            Each rendering starts afresh: the page's script (which rendering fills) is emptied and
            the ``addTo`` statements that layers add to themselves while rendering are dropped, so
            a second rendering (``save`` after showing) gives the same page instead of adding every
            layer to the map twice.
            """
            counter = itertools.count()
            root = cast("Figure", self.get_root())
            root.script._children.clear()

            def renumber(element: Any) -> None:
                for key in [k for k, c in element._children.items() if isinstance(c, ElementAddToElement)]:
                    del element._children[key]
                element._id = f"{next(counter):08x}"
                for child in element._children.values():
                    renumber(child)

            renumber(root)
            page = root.render()
            if self.offline:
                check_offline_html(page)
            return page

        def save(self, outfile: str | bytes | Path | BinaryIO, close_file: bool = True,
                 **kwargs: Any) -> None:  # noqa: ARG002
            """Write the page to a path atomically (``geolab.io``), or into an open binary file (as folium does)."""
            page = self.offline_html()
            if isinstance(outfile, (str, bytes, os.PathLike)):
                atomic_write_text(os.fsdecode(outfile), page)
                return
            outfile.write(page.encode("utf-8"))
            if close_file:
                outfile.close()

        def _repr_html_(self, **kwargs: Any) -> str:  # noqa: ARG002
            # Same iframe as folium's, but with our offline page in srcdoc.
            srcdoc = srcdoc_escape(self.offline_html())
            return (
                '<div style="width:100%;"><div style="position:relative;width:100%;height:0;'
                'padding-bottom:60%;"><iframe srcdoc="' + srcdoc + '" style="position:absolute;'
                'width:100%;height:100%;left:0;top:0;border:none !important;" allowfullscreen '
                "webkitallowfullscreen mozallowfullscreen></iframe></div></div>"
            )

    return OfflineMap


def _legend_class() -> type:
    """A map-corner control holding ready-made HTML."""
    from branca.element import MacroElement  # noqa: PLC0415 - branca comes with folium

    class Legend(MacroElement):
        """A Leaflet control in a map corner holding ready-made HTML."""

        _template = _folium_template(
            """
            {% macro script(this, kwargs) %}
            var {{ this.get_name() }} = L.control({position: {{ this.position|tojson }}});
            {{ this.get_name() }}.onAdd = function () {
                var div = L.DomUtil.create("div", "geolab-legend");
                div.innerHTML = {{ this.html|tojson }};
                L.DomEvent.disableScrollPropagation(div);
                return div;
            };
            {{ this.get_name() }}.addTo({{ this._parent.get_name() }});
            {% endmacro %}
            """
        )

        def __init__(self, html_text: str, position: str = "bottomleft") -> None:
            super().__init__()
            self._name = "Legend"
            self.html = html_text
            self.position = position

    return Legend


def _location_markers_class() -> type:
    """The location markers with their popups: one compact data table and a loop (no jQuery)."""
    from branca.element import MacroElement  # noqa: PLC0415 - branca comes with folium

    class LocationMarkers(MacroElement):
        """One circle per location, with a tooltip and a popup of its revisits, from one data table.

        ``table`` holds ``labels``, ``splits`` and ``colours`` (lists the rows index into) and
        ``rows``: per location ``[lat, lon, colour, location id, label, split, geo cluster or
        null, images, first date, last date, thumbnails or null (no popup)]``, thumbnails as
        ``[[base64 or null (unreadable), date], ...]``; texts are HTML already. The script loops
        over the rows, writes the tooltip (``id: label``) and the popup, and binds the popup
        with Leaflet's own ``bindPopup`` (folium's ``Popup`` needs jQuery, absent offline).
        """

        _template = _folium_template(
            """
            {% macro script(this, kwargs) %}
            (function (d, group) {
                var wh = " style='width:" + d.size + "px;height:" + d.size + "px'";
                d.rows.forEach(function (r) {
                    var m = L.circleMarker([r[0], r[1]], Object.assign({fillColor: d.colours[r[2]]}, d.style));
                    m.bindTooltip(r[3] + ": " + d.labels[r[4]], {sticky: true});
                    if (r[10] !== null) {
                        var h = "<div class='geolab-popup'><b>" + r[3] + "</b><br>" + d.labels[r[4]] + " \u00b7 "
                            + d.splits[r[5]] + (r[6] === null ? "" : " \u00b7 geo cluster " + r[6]) + "<br>"
                            + (r[7] === 1 ? "1 image, " + r[8] : r[7] + " revisits, " + r[8] + " to " + r[9]) + "<br>";
                        r[10].forEach(function (t) {
                            var img = t[0] === null ? "<span class='geolab-unreadable'" + wh + ">unreadable</span>"
                                : "<img src='" + d.mime + t[0] + "'" + wh + ">";
                            h += "<figure class='geolab-thumb'>" + img + "<figcaption>" + t[1];
                            h += "</figcaption></figure>";
                        });
                        m.bindPopup(h + "</div>", {maxWidth: d.maxWidth});
                    }
                    m.addTo(group);
                });
            })({{ this.data }}, {{ this._parent.get_name() }});
            {% endmacro %}
            """
        )

        def __init__(self, table: dict[str, Any], style: dict[str, Any], *, thumb_size: int, mime: str,
                     max_width: int) -> None:
            super().__init__()
            self._name = "LocationMarkers"
            self.table = table
            self.data = js_data({**table, "style": style, "size": int(thumb_size), "mime": f"data:{mime};base64,",
                                 "maxWidth": int(max_width)})

    return LocationMarkers


def _land_outline_class() -> type:
    """The land outline layer (delta-encoded rings expanded in the browser)."""
    import folium  # noqa: PLC0415 - folium is a lab extra

    class LandOutline(folium.map.Layer):
        """A GeoJSON FeatureCollection of polygons written as :func:`delta_rings` and drawn with ``L.geoJson``."""

        _template = _folium_template(
            """
            {% macro script(this, kwargs) %}
            var {{ this.get_name() }} = L.geoJson({type: "FeatureCollection", features: {{ this.data }}.map(
                function (rings) {
                    return {type: "Feature", properties: {}, geometry: {type: "Polygon", coordinates: rings.map(
                        function (r) {
                            var out = [], x = 0, y = 0;
                            for (var i = 0; i < r.length; i += 2) {
                                x += r[i];
                                y += r[i + 1];
                                out.push([x / 100, y / 100]);
                            }
                            return out;
                        })}};
                })}, {{ this.options|tojson }});
            {% endmacro %}
            """
        )

        def __init__(self, outline: dict[str, Any], name: str, style: dict[str, Any], pane: str, class_name: str):
            super().__init__(name=name, overlay=True)
            self._name = "LandOutline"
            self.data = js_data([delta_rings(f["geometry"]["coordinates"]) for f in outline["features"]])
            self.options = {"style": style, "pane": pane, "className": class_name, "interactive": False}

    return LandOutline


_CLASSES: FoliumClasses | None = None

_EXTERNAL = re.compile(
    r"""<(?:script|img|iframe|source|audio|video)\b[^>]*\bsrc\s*=\s*["']?(?!data:|#|["'])([^"'\s>]+)"""
    r"""|<link\b[^>]*\bhref\s*=\s*["']?(?!data:|#)([^"'\s>]+)"""
    r"""|url\(\s*["']?(?!data:|#)(https?:[^)"']+)""",
    re.IGNORECASE,
)


def check_offline_html(page: str) -> None:
    """Raise :class:`OfflineMapError` if ``page`` would load a script, style sheet or image from anywhere but itself.

    ``data:`` URIs are fine; links a user may click are too. The inlined Leaflet library is skipped
    (it only names URLs in strings).
    """
    outside = re.sub(r"<script>.*?</script>", "<script></script>", page, flags=re.DOTALL)
    found = [m.group(1) or m.group(2) or m.group(3) for m in _EXTERNAL.finditer(outside)]
    if found:
        raise OfflineMapError(
            f"The map page would load {len(found)} resource(s) from outside the file: "
            + ", ".join(sorted(set(found))[:5])
            + ". Something added a folium plugin or a link that needs the network; use "
            "geolab.viz's layers, or pass offline=False if the map will only be viewed online."
        )
