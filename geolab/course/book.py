"""The executed course as an offline static site: ``make book`` (``python -m geolab.course.book``).

A course run folder (``geolab course run --out RUN``) holds the executed notebooks, ``results.json``
and ``report.md``. :func:`build_book` renders them with Sphinx and myst-nb (the engine of Jupyter
Book 1, from PyPI, so the build needs no network and no Node.js) and the sphinx-book-theme into
one HTML site: a page per notebook in course order with its figures, maps and tables, a results
page (the report), the world card, and the navigation between them.

The site works from the file system with no network: the folium maps already carry Leaflet
inline (``geolab.viz.assets``); math is converted to MathML at build time (latex2mathml) instead of
loading MathJax; widget outputs are replaced by a static rendering of their state (the picture the
widget carried, or its saved widget state drawn as HTML) with the note that they are live in
JupyterLab, so neither require.js nor the ipywidgets HTML manager is loaded. :func:`network_references`
checks every page and style sheet after the build.

geolab is also the Sphinx extension of the build (:func:`setup` registers the MathML renderer).
"""

from __future__ import annotations

import argparse
import base64
import html
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nbformat

from geolab.course.report import SIMULATION_BANNER, report_markdown
from geolab.errors import UserError
from geolab.io import read_json
from geolab.paths import manifests_dir
from geolab.viz.widgets import LIVE_NOTE, static_widget_html

#: The marker of a folder this module built (only such a folder is emptied before a rebuild).
MARKER = ".geolab-book"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
#: Said on every page of a site built from geoworld.
SIMULATION_ANNOUNCEMENT = (
    "geoworld is a simulation: these notebooks ran on procedurally generated images of real places, "
    "not on satellite images; their numbers are not fMoW's."
)


class BookError(UserError):
    """The run folder cannot be rendered, or the site would need the network."""


# ----------------------------------------------------------------------------- widgets
def _box(children: Sequence[str], direction: str) -> str:
    inner = "".join(f"<div>{c}</div>" for c in children)
    return f'<div style="display:flex;flex-direction:{direction};gap:6px;flex-wrap:wrap">{inner}</div>'


def render_widget_state(states: Mapping[str, Any], model_id: str, depth: int = 0) -> str:
    """HTML that draws a saved widget (``application/vnd.jupyter.widget-state+json``) without JavaScript.

    Boxes become flex boxes, images inline ``data:`` PNGs, HTML and labels their text, and controls
    (sliders, drop-downs, check boxes, buttons) a line that says their value.

    Args:
        states: the notebook's widget states (``metadata.widgets[...]["state"]``), model id -> model.
        model_id: the widget to draw.
        depth: nesting level (a guard against cycles).

    Returns:
        The HTML, or an empty string when the model is not in ``states``.
    """
    model = states.get(model_id)
    if model is None or depth > 30:
        return ""
    name = str(model.get("model_name", ""))
    st = model.get("state", {})
    desc = html.escape(str(st.get("description") or ""))
    label = f"{desc}: " if desc else ""
    if name in ("VBoxModel", "BoxModel", "GridBoxModel", "HBoxModel", "AccordionModel", "TabModel"):
        ids = [str(c).removeprefix("IPY_MODEL_") for c in st.get("children", [])]
        kids = [render_widget_state(states, child, depth + 1) for child in ids]
        return _box(kids, "row" if name == "HBoxModel" else "column")
    if name == "ImageModel":
        for buf in model.get("buffers", []):
            if buf.get("path") == ["value"] and buf.get("encoding") == "base64":
                size = "".join(f' {k}="{html.escape(str(st[k]))}"' for k in ("width", "height") if st.get(k))
                fmt = html.escape(str(st.get("format", "png")))
                return f'<img src="data:image/{fmt};base64,{buf["data"]}"{size} alt="widget image"/>'
        return ""
    if name in ("HTMLModel", "HTMLMathModel"):
        return str(st.get("value", ""))
    if name == "LabelModel":
        return html.escape(str(st.get("value", "")))
    if name in ("DropdownModel", "SelectModel", "RadioButtonsModel", "ToggleButtonsModel"):
        options, index = st.get("_options_labels", []), st.get("index")
        value = options[index] if isinstance(index, int) and 0 <= index < len(options) else ""
        return f"<code>{label}{html.escape(str(value))}</code>"
    if name.endswith("SliderModel") or name.endswith("TextModel") or name in ("BoundedIntTextModel",):
        rng = f" (from {st['min']} to {st['max']})" if "min" in st and "max" in st else ""
        return f"<code>{label}{html.escape(str(st.get('value', '')))}{html.escape(rng)}</code>"
    if name in ("CheckboxModel", "ToggleButtonModel"):
        return f"<code>{'[x]' if st.get('value') else '[ ]'} {desc}</code>"
    if name == "ButtonModel":
        return f"<button disabled>{desc}</button>"
    if name == "OutputModel":
        parts = []
        for out in st.get("outputs", []):
            data = out.get("data", {})
            if "text/html" in data:
                parts.append(str(data["text/html"]))
            elif "image/png" in data:
                parts.append(f'<img src="data:image/png;base64,{data["image/png"]}" alt="widget output"/>')
            elif "text" in out or "text/plain" in data:
                parts.append(f"<pre>{html.escape(str(out.get('text') or data.get('text/plain')))}</pre>")
        return "".join(parts)
    return ""


def static_widget_output(data: Mapping[str, Any], states: Mapping[str, Any]) -> str:
    """The HTML that replaces one widget output of a saved notebook, always with :data:`LIVE_NOTE`.

    The widget's own ``text/html`` (``geolab.viz.widgets``) first, else its ``image/png``
    (``geolab.viz.explain``), else its saved state drawn by :func:`render_widget_state`.
    """
    if "text/html" in data:
        return str(data["text/html"])
    if "image/png" in data:
        return static_widget_html(base64.b64decode(str(data["image/png"])))
    model_id = str(data.get(WIDGET_VIEW, {}).get("model_id", ""))
    drawn = render_widget_state(states, model_id)
    note = LIVE_NOTE if drawn else "Interactive widget (its state was not saved in this run); it is live in JupyterLab."
    caption = f'<p style="font-size:0.85em;color:#555"><i>{html.escape(note)}</i></p>'
    return f'<div class="geolab-widget-static">{drawn}{caption}</div>'


def static_notebook(nb: Any) -> Any:
    """``nb`` (changed in place) with every widget output replaced by a static rendering.

    The notebook's widget state is dropped afterwards, so the site loads no widget manager.
    """
    states = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if WIDGET_VIEW in data:
                plain = data.get("text/plain", "")
                out["data"] = {"text/html": static_widget_output(data, states), "text/plain": plain}
    nb.metadata.pop("widgets", None)
    return nb


# ----------------------------------------------------------------------------- pages
def _title(nb: Any, fallback: str) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            m = re.search(r"^#\s+(.+)$", cell.source, flags=re.MULTILINE)
            if m:
                return m.group(1).strip()
    return fallback


def _index_page(run: Path, results: Mapping[str, Any], titles: Mapping[str, str]) -> str:
    simulated = bool(results.get("simulation"))
    lines = ["# Geography-Aware Self-Supervised Learning: the executed course", ""]
    if simulated:
        lines += ["```{important}", SIMULATION_BANNER, "```", ""]
    meta = ", ".join(f"{k} `{results[k]}`" for k in ("profile", "data", "geolab_version", "created") if results.get(k))
    lines += [
        f"This site shows the notebooks of the course run in `{run}` ({meta or 'no results.json'}) as they "
        "ran, with their figures, maps and tables, then the run's report and the world card. It needs no "
        "network. Interactive widgets appear as a static picture of their state; they are live in "
        "JupyterLab (`make lab`).",
        "",
        "| notebook | status | wall time |",
        "| --- | --- | ---: |",
    ]
    status = {str(n.get("notebook")): n for n in results.get("notebooks", [])}
    for doc, title in titles.items():
        n = status.get(doc, {})
        wall = f"{float(n['wall_time_s']):.0f} s" if n.get("wall_time_s") is not None else ""
        link = title.replace("|", "\\|")  # a bar would end the table cell
        lines.append(f"| [{link}]({doc}.ipynb) | {n.get('status', '')} | {wall} |")
    lines += ["", "```{toctree}", ":caption: The course", ":maxdepth: 1", "", *titles, "```", ""]
    lines += ["```{toctree}", ":caption: Results", ":maxdepth: 1", "", "results", "world_card", "```", ""]
    return "\n".join(lines)


def _conf(title: str, announcement: str) -> str:
    settings: dict[str, Any] = {
        "project": "geolab course",
        "author": "geolab",
        "extensions": ["myst_nb", "geolab.course.book"],
        "html_theme": "sphinx_book_theme",
        "html_title": title,
        "html_theme_options": {
            "home_page_in_toc": True,
            "show_navbar_depth": 1,
            "use_download_button": False,
            "use_fullscreen_button": False,
            "announcement": announcement,
        },
        # a mode from the start: otherwise the theme warns in the console on a first visit
        "html_context": {"default_mode": "light"},
        "html_math_renderer": "geolab_mathml",
        "html_copy_source": False,
        "html_show_sourcelink": False,
        "myst_enable_extensions": ["dollarmath", "amsmath", "colon_fence"],
        "myst_heading_anchors": 3,
        "nb_execution_mode": "off",
        # widgets are drawn statically (static_notebook): no require.js, no HTML manager from a CDN
        "nb_ipywidgets_js": {},
        "nb_merge_streams": True,
        "suppress_warnings": [
            "myst.header", "mystnb.unknown_mime_type", "misc.highlighting_failure", "myst.xref_missing",
        ],
        "exclude_patterns": ["_build"],
    }
    return "".join(f"{k} = {v!r}\n" for k, v in settings.items())


def prepare_sources(run: str | os.PathLike, src: str | os.PathLike) -> list[str]:
    """Write the Sphinx sources of the site of ``run`` into ``src``; the run is only read.

    Args:
        run: a course run folder (``RUN/notebooks/*.ipynb``, ``results.json``, ``report.md``).
        src: an empty folder for the sources (``conf.py``, ``index.md``, the notebooks, ``results.md``,
            ``world_card.md``, the report's figures).

    Returns:
        The notebook pages in course order (document names).

    Raises:
        BookError: the run has no executed notebooks.
    """
    run, src = Path(run), Path(src)
    notebooks = sorted((run / "notebooks").glob("*.ipynb"))
    if not notebooks:
        raise BookError(
            f"{run / 'notebooks'} has no executed notebooks: make the course run first "
            f"(make course RUN={run}, or geolab course run --profile cpu --out {run})."
        )
    results: Mapping[str, Any] = {}
    if (run / "results.json").is_file():
        fix = f"rerun the course (geolab course run --out {run}) to write it again"
        results = read_json(run / "results.json", fix=fix)
    titles: dict[str, str] = {}
    for path in notebooks:
        nb = static_notebook(nbformat.read(path, as_version=4))
        titles[path.stem] = _title(nb, path.stem)
        nbformat.write(nb, src / path.name)
    if (run / "report.md").is_file():
        report = (run / "report.md").read_text(encoding="utf-8")
    elif results:
        report = report_markdown(results)
    else:
        report = "# Results\n\nThis run has neither `report.md` nor `results.json`.\n"
    if report.startswith("# "):
        report = "# Results: " + report[2:]  # the navigation names the page for what it is
    (src / "results.md").write_text(report, encoding="utf-8")
    if (run / "figures").is_dir():
        shutil.copytree(run / "figures", src / "figures")
    card = manifests_dir() / "WORLD_CARD.md"
    (src / "world_card.md").write_text(
        card.read_text(encoding="utf-8") if card.is_file() else "# geoworld world card\n\nNot found.\n",
        encoding="utf-8",
    )
    (src / "index.md").write_text(_index_page(run, results, titles), encoding="utf-8")
    simulated = bool(results.get("simulation"))
    (src / "conf.py").write_text(_conf("geolab course", SIMULATION_ANNOUNCEMENT if simulated else ""), encoding="utf-8")
    return list(titles)


# ----------------------------------------------------------------------------- offline check
_TAG_URL = re.compile(
    r"""<(?:script|img|iframe|source|audio|video|embed|input)\b[^>]*?\bsrc\s*=\s*["']?((?:https?:)?//[^"'\s>]+)"""
    r"""|<link\b[^>]*?\bhref\s*=\s*["']?((?:https?:)?//[^"'\s>]+)""",
    re.IGNORECASE,
)
_CSS_URL = re.compile(r"""(?:url\(\s*["']?|@import\s+["'])((?:https?:)?//[^)"'\s]+)""", re.IGNORECASE)
_INLINE_SCRIPT = re.compile(r"<script\b(?![^>]*\bsrc=)[^>]*>.*?</script>", re.IGNORECASE | re.DOTALL)
_SRCDOC = re.compile(r"""\bsrcdoc\s*=\s*"([^"]*)\"""", re.IGNORECASE)


def network_references(page: str, css: bool = False) -> list[str]:
    """The URLs on the network that ``page`` (HTML, or a style sheet with ``css=True``) would load.

    Scripts, style sheets, images, frames and CSS ``url()``/``@import`` with ``http(s)://`` or ``//``
    count; links a reader may click (``<a href>``) and URLs named inside inline scripts (the inlined
    Leaflet library names some in strings) do not. Frames given as ``srcdoc`` (the maps) are checked too.
    """
    if css:
        return [m.group(1) for m in _CSS_URL.finditer(page)]
    found: list[str] = []
    for doc in _SRCDOC.findall(page):
        found += network_references(html.unescape(doc))
    outside = _INLINE_SCRIPT.sub("", _SRCDOC.sub("", page))
    found += [m.group(1) or m.group(2) for m in _TAG_URL.finditer(outside)]
    for style in re.findall(r"<style\b[^>]*>(.*?)</style>", outside, flags=re.IGNORECASE | re.DOTALL):
        found += network_references(style, css=True)
    return found


def check_offline(site: str | os.PathLike) -> None:
    """Raise :class:`BookError` if a page or style sheet of ``site`` loads anything from the network."""
    bad: dict[str, list[str]] = {}
    for path in sorted(Path(site).rglob("*")):
        if path.suffix in (".html", ".css"):
            refs = network_references(path.read_text(encoding="utf-8", errors="replace"), css=path.suffix == ".css")
            if refs:
                bad[str(path.relative_to(site))] = refs
    if bad:
        listing = "; ".join(f"{page}: {', '.join(sorted(set(refs))[:3])}" for page, refs in list(bad.items())[:5])
        raise BookError(
            f"The site in {site} would load {sum(map(len, bad.values()))} resource(s) from the network ({listing}). "
            "A theme option, extension or notebook output links to a CDN: make it local or drop it."
        )


# ----------------------------------------------------------------------------- build
def build_book(run: str | os.PathLike, out: str | os.PathLike | None = None, verbose: bool = False) -> Path:
    """Render the executed course of ``run`` into a static site; return the path of its ``index.html``.

    Args:
        run: a course run folder (made by ``geolab course run`` / ``make course``).
        out: the site's folder (default ``RUN/book``); a folder this function built before is replaced.
        verbose: show Sphinx's progress (its warnings always go to stderr).

    Returns:
        ``out/index.html``.

    Raises:
        BookError: no executed notebooks in ``run``; ``out`` holds something else; the build failed;
            or the site would load something from the network.
    """
    from sphinx.application import Sphinx  # noqa: PLC0415 - sphinx is in the lab extra

    run = Path(run)
    out = Path(out) if out is not None else run / "book"
    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).is_file():
            raise BookError(f"{out} exists and is not a site built by geolab: give another --out, or empty it.")
        shutil.rmtree(out)
    with tempfile.TemporaryDirectory(prefix="geolab-book-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        prepare_sources(run, src)
        app = Sphinx(
            str(src), str(src), str(out), str(Path(tmp) / "doctrees"), "html",
            status=sys.stdout if verbose else None, warning=sys.stderr, freshenv=True,
        )  # fmt: skip
        app.build()
        if app.statuscode:
            raise BookError(f"Sphinx could not build the site of {run} (exit {app.statuscode}); see its messages above")
    (out / MARKER).write_text("built by geolab.course.book from " + str(run.resolve()) + "\n", encoding="utf-8")
    check_offline(out)
    return out / "index.html"


# ----------------------------------------------------------------------------- Sphinx extension
def _visit_math(translator: Any, node: Any, display: str) -> None:
    from docutils import nodes  # noqa: PLC0415 - docutils comes with sphinx (lab extra)
    from latex2mathml.converter import convert  # noqa: PLC0415 - lab extra

    tex = node.astext()
    try:
        translator.body.append(convert(tex, display=display))
    except Exception:  # noqa: BLE001 - latex2mathml raises many kinds; the TeX itself is still readable
        translator.body.append(f"<code>{html.escape(tex)}</code>")
    raise nodes.SkipNode


def setup(app: Any) -> dict[str, Any]:
    """Sphinx extension: the ``geolab_mathml`` math renderer (TeX to MathML at build time, no MathJax)."""
    app.add_html_math_renderer(
        "geolab_mathml",
        (lambda self, node: _visit_math(self, node, "inline"), None),
        (lambda self, node: _visit_math(self, node, "block"), None),
    )
    return {"parallel_read_safe": True, "parallel_write_safe": True}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m geolab.course.book --run RUN [--out DIR]``: build the site, print its index.html last."""
    parser = argparse.ArgumentParser(prog="python -m geolab.course.book", description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a course run folder (geolab course run --out RUN)")
    parser.add_argument("--out", default=None, help="the site's folder (default: RUN/book)")
    parser.add_argument("--verbose", action="store_true", help="show Sphinx's progress")
    args = parser.parse_args(argv)
    try:
        index = build_book(args.run, args.out, verbose=args.verbose)
    except UserError as err:
        print(f"geolab book: error: {err}", file=sys.stderr)
        return 2
    print(index.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
