"""The folium classes of geolab's offline maps: a map whose page loads nothing from the network.

:func:`folium_classes` builds, on first use (folium is a ``lab`` extra, imported then), the
``folium.Map`` subclass :class:`OfflineMap` (Leaflet's JS/CSS inlined, folium's CDN links left
out, ``save``/``_repr_html_`` checked by :func:`check_offline_html`) and the two elements that
:func:`geolab.viz.maps.location_map` adds to it: a legend control and a popup that needs no jQuery.
"""

from __future__ import annotations

import html
import itertools
import re
from pathlib import Path
from typing import Any

from geolab.io import atomic_write_text
from geolab.viz.assets import leaflet_assets


class OfflineMapError(RuntimeError):
    """A map page would load something from the network although it was asked not to."""


def folium_classes() -> tuple[Any, Any, Any]:
    """OfflineMap, Legend and HtmlPopup, built on folium (imported lazily: folium is a lab extra)."""
    global _CLASSES
    if _CLASSES is not None:
        return _CLASSES
    import folium  # noqa: PLC0415 - folium is a lab extra
    from branca.element import Element, MacroElement  # noqa: PLC0415 - branca comes with folium

    try:
        from folium.template import Template  # noqa: PLC0415 - folium >= 0.16
    except ImportError:  # older folium renders plain jinja2 templates (our macros need only tojson)
        from jinja2 import Template  # noqa: PLC0415 - jinja2 comes with folium

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
                self.get_root().header.add_child(
                    Element(f"<style>{assets.css()}</style>\n<script>{js}</script>"), name="leaflet_inline"
                )

        def offline_html(self) -> str:
            """The whole page as one string (checked for external loads when offline).

            Element ids are numbered in tree order instead of folium's random ones, so the
            same map gives the same bytes (diffable files, nbval-comparable notebook output).
            """
            counter = itertools.count()

            def renumber(element: Any) -> None:
                element._id = f"{next(counter):08x}"
                for child in element._children.values():
                    renumber(child)

            renumber(self.get_root())
            page = self.get_root().render()
            if self.offline:
                check_offline_html(page)
            return page

        def save(self, outfile: str | Path, close_file: bool = True, **kwargs: Any) -> None:  # noqa: ARG002
            """Write the page atomically (``geolab.io``)."""
            atomic_write_text(outfile, self.offline_html())

        def _repr_html_(self, **kwargs: Any) -> str:  # noqa: ARG002
            # Same iframe as folium's, but with our offline page in srcdoc.
            srcdoc = html.escape(self.offline_html(), quote=True)
            return (
                '<div style="width:100%;"><div style="position:relative;width:100%;height:0;'
                'padding-bottom:60%;"><iframe srcdoc="' + srcdoc + '" style="position:absolute;'
                'width:100%;height:100%;left:0;top:0;border:none !important;" allowfullscreen '
                "webkitallowfullscreen mozallowfullscreen></iframe></div></div>"
            )

    class Legend(MacroElement):
        """A Leaflet control in a map corner holding ready-made HTML."""

        _template = Template(
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

    class HtmlPopup(MacroElement):
        """A popup of ready-made HTML bound with Leaflet's own ``bindPopup``.

        folium's ``Popup`` builds its content with jQuery, which an offline page does not load.
        """

        _template = Template(
            """
            {% macro script(this, kwargs) %}
            {{ this._parent.get_name() }}.bindPopup({{ this.html|tojson }}, {{ this.options|tojson }});
            {% endmacro %}
            """
        )

        def __init__(self, html_text: str, max_width: int = 300) -> None:
            super().__init__()
            self._name = "HtmlPopup"
            self.html = html_text
            self.options = {"maxWidth": int(max_width)}

    _CLASSES = (OfflineMap, Legend, HtmlPopup)
    return _CLASSES


_CLASSES: tuple[Any, Any, Any] | None = None

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
