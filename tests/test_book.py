"""``make book``: a course run rendered into an offline static site (geolab.course.book).

The site is built from a tiny run folder made here (three small notebooks whose outputs are
written in code: a PNG figure, an HTML table, math, widgets, a folium map), not from a real
course run, so the build takes seconds. ``test_book_browser.py`` opens the same site in
headless Chromium with the network off.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from geolab.course import book
from geolab.viz.widgets import LIVE_NOTE

NOTEBOOKS = ("00_intro", "01_figures", "02_map")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def _png(colour: str = "tab:blue") -> bytes:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1, 2], [0, 1, 0], color=colour)
    ax.set_title("a small figure")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=50)
    plt.close(fig)
    return buf.getvalue()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _saved_widget_state() -> tuple[str, dict]:
    """A VBox (slider, image, HTML caption) as papermill saves it: state in metadata, PNG as a base64 buffer."""
    ids = {k: f"{k}0000000000000000000000000000"[:32] for k in ("vbox", "slider", "image", "html")}
    ctl = {"_model_module": "@jupyter-widgets/controls"}
    state = {
        ids["vbox"]: {"model_name": "VBoxModel", **ctl, "state": {
            "children": [f"IPY_MODEL_{ids[k]}" for k in ("slider", "image", "html")]}},
        ids["slider"]: {"model_name": "IntSliderModel", **ctl, "state": {
            "description": "revisit", "value": 2, "min": 0, "max": 4}},
        ids["image"]: {"model_name": "ImageModel", **ctl, "state": {"format": "png", "width": "64"},
                       "buffers": [{"path": ["value"], "encoding": "base64", "data": _b64(_png("tab:red"))}]},
        ids["html"]: {"model_name": "HTMLModel", **ctl, "state": {"value": "<b>loc_007</b> revisit 3 of 5"}},
    }  # fmt: skip
    return ids["vbox"], {"application/vnd.jupyter.widget-state+json": {"version_major": 2, "version_minor": 0,
                                                                       "state": state}}  # fmt: skip


def make_course_run(folder: Path) -> tuple[Path, int]:
    """A tiny course run folder: three executed notebooks, results.json, report.md and a figure.

    Returns:
        The run folder and the number of locations on its map.
    """
    from helpers import make_manifest

    import geolab.viz as viz
    from geolab.manifest import load_manifest

    run = folder / "run"
    (run / "notebooks").mkdir(parents=True)
    (run / "figures").mkdir()
    (run / "figures" / "probe.png").write_bytes(_png("tab:green"))
    df = load_manifest(make_manifest(folder / "data", n_locations=6))

    intro = new_notebook()
    intro.cells = [
        new_markdown_cell("# 00 · Intro\n\nInfoNCE over $N$ keys: chance is $\\ln(N + 1)$.\n\n"
                          "$$\\alpha + \\beta = 1$$"),
        new_code_cell("print('hello')", execution_count=1,
                      outputs=[new_output("stream", name="stdout", text="hello\n")]),
        new_code_cell("table", execution_count=2, outputs=[new_output(
            "execute_result", execution_count=2, data={"text/html": df.head(3).to_html(), "text/plain": "table"})]),
    ]  # fmt: skip

    figures = new_notebook()
    vbox_id, widget_meta = _saved_widget_state()
    viewer = viz.revisit_viewer(df)._repr_mimebundle_()
    figures.cells = [
        new_markdown_cell("# 01 · Figures\n\nA figure, then three widgets."),
        new_code_cell("plot()", execution_count=1, outputs=[new_output(
            "display_data", data={"image/png": _b64(_png()), "text/plain": "<Figure>"})]),
        # geolab.viz.widgets: the widget's own text/html fallback
        new_code_cell("viz.revisit_viewer(df)", execution_count=2, outputs=[new_output(
            "display_data", data={k: viewer[k] for k in (WIDGET_VIEW, "text/html", "text/plain")})]),
        # geolab.viz.explain: a PNG beside the widget view
        new_code_cell("viz.temperature_explorer(...)", execution_count=3, outputs=[new_output(
            "display_data", data={WIDGET_VIEW: {"model_id": "f" * 32, "version_major": 2, "version_minor": 0},
                                  "image/png": _b64(_png("tab:orange")), "text/plain": "TemperatureExplorer(...)"})]),
        # a widget with only its saved state (a run made before the fallbacks existed)
        new_code_cell("old_widget", execution_count=4, outputs=[new_output(
            "display_data", data={WIDGET_VIEW: {"model_id": vbox_id, "version_major": 2, "version_minor": 0},
                                  "text/plain": "VBox(...)"})]),
    ]  # fmt: skip
    figures.metadata["widgets"] = widget_meta

    geo = new_notebook()
    m = viz.location_map(df, color_by="label")
    geo.cells = [
        new_markdown_cell("# 02 · Map\n\nEvery location of the manifest."),
        new_code_cell("m", execution_count=1, outputs=[new_output(
            "execute_result", execution_count=1, data={"text/html": m._repr_html_(), "text/plain": "<Map>"})]),
    ]  # fmt: skip

    for name, nb in zip(NOTEBOOKS, (intro, figures, geo)):
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb.metadata["language_info"] = {"name": "python", "pygments_lexer": "ipython3"}
        nbformat.write(nb, run / "notebooks" / f"{name}.ipynb")
    results = {
        "created": "2026-12-07T00:00:00+00:00", "data": "geoworld", "profile": "smoke", "simulation": True,
        "geolab_version": "0.0.0", "kernel": "python3", "schema_version": 1, "records": [],
        "notebooks": [{"notebook": n, "status": "ok", "wall_time_s": 1.5} for n in NOTEBOOKS],
    }  # fmt: skip
    (run / "results.json").write_text(json.dumps(results))
    (run / "report.md").write_text("# geolab course run: profile `smoke`\n\nThe numbers.\n\n"
                                   "![Linear-probe top-1](figures/probe.png)\n")  # fmt: skip
    return run, int(df["location_id"].nunique())


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The tiny run, built once with ``python -m geolab.course.book``'s entry point (its output kept)."""
    folder = tmp_path_factory.mktemp("book")
    run, n_locations = make_course_run(folder)
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        rc = book.main(["--run", str(run)])
    return {"run": run, "out": run / "book", "n_locations": n_locations, "rc": rc, "stdout": stdout.getvalue()}


def test_build_prints_index_html_last(site: dict) -> None:
    assert site["rc"] == 0
    index = Path(site["stdout"].strip().splitlines()[-1])
    assert index == (site["out"] / "index.html").resolve()
    assert index.is_file()


def _page(site: dict, name: str) -> str:
    return (site["out"] / f"{name}.html").read_text(encoding="utf-8")


def test_one_page_per_notebook_a_results_page_and_the_world_card(site: dict) -> None:
    for name in (*NOTEBOOKS, "results", "world_card", "index"):
        assert (site["out"] / f"{name}.html").is_file(), name
    assert "world card" in _page(site, "world_card").lower()
    results = _page(site, "results")
    assert "Results: geolab course run" in results
    assert re.search(r'<img[^>]+src="_images/probe[^"]*\.png"', results)


def test_navigation_follows_the_course_order(site: dict) -> None:
    index = _page(site, "index")
    nav = index[index.index("bd-sidebar-primary") :]
    order = [nav.index(f'href="{name}.html"') for name in (*NOTEBOOKS, "results", "world_card")]
    assert order == sorted(order)
    # each page's "next" link is the next page of the course
    pages = ["index", *NOTEBOOKS, "results", "world_card"]
    for here, there in zip(pages, pages[1:]):
        assert re.search(rf'<link rel="next"[^>]*href="{there}.html"', _page(site, here)), (here, there)


def test_pages_show_their_figures_tables_math_and_map(site: dict) -> None:
    intro = _page(site, "00_intro")
    assert "<table" in intro and "dataframe" in intro
    assert intro.count("<math") >= 3  # two inline, one display: MathML, no MathJax
    figures = _page(site, "01_figures")
    assert len(re.findall(r"<img[^>]+src=\"(?:_images/|data:image/png)", figures)) >= 4
    assert "<iframe" in _page(site, "02_map") and "leaflet" in _page(site, "02_map").lower()


def test_widgets_are_static_with_the_live_note(site: dict) -> None:
    figures = _page(site, "01_figures")
    assert figures.count(LIVE_NOTE) == 3
    assert "loc_007</b> revisit 3 of 5" in figures  # the saved state, drawn
    assert "revisit: 2 (from 0 to 4)" in figures
    for name in NOTEBOOKS:
        page = _page(site, name)
        assert "widget-view+json" not in page and "widget-state+json" not in page
        assert "require.js" not in page and "html-manager" not in page


def test_no_page_loads_anything_from_the_network(site: dict) -> None:
    pages = list(site["out"].rglob("*.html")) + list(site["out"].rglob("*.css"))
    assert len(pages) > 6
    for path in pages:
        text = path.read_text(encoding="utf-8", errors="replace")
        assert book.network_references(text, css=path.suffix == ".css") == [], path
        assert not re.search(r"<script[^>]*mathjax|MathJax\.js|tex-mml", text, flags=re.IGNORECASE), path
    assert "simulation" in _page(site, "index").lower()
    assert book.SIMULATION_ANNOUNCEMENT in _page(site, "02_map")  # the banner on every page


@pytest.mark.parametrize(
    ("html_text", "found"),
    [
        ('<script src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"></script>', 1),
        ('<link rel="stylesheet" href="//fonts.googleapis.com/css?family=Lato">', 1),
        ("<style>@import 'https://fonts.googleapis.com/css2?family=Roboto';</style>", 1),
        ('<iframe srcdoc="&lt;script src=&quot;https://unpkg.com/leaflet.js&quot;&gt;&lt;/script&gt;"></iframe>', 1),
        ('<a href="https://arxiv.org/abs/2011.09980">the paper</a>', 0),
        ('<script>var attribution = "https://leafletjs.com";</script>', 0),
        ('<script src="_static/doctools.js"></script><img src="data:image/png;base64,AAAA">', 0),
    ],
)
def test_network_references_finds_what_a_page_would_load(html_text: str, found: int) -> None:
    assert len(book.network_references(html_text)) == found
    assert book.network_references("@font-face { src: url(https://x.org/f.woff2); }", css=True)


def test_a_run_without_notebooks_says_to_run_the_course_first(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(book.BookError, match="make course RUN="):
        book.build_book(tmp_path / "nothing")
    assert book.main(["--run", str(tmp_path / "nothing")]) == 2
    assert "geolab book: error:" in capsys.readouterr().err


def test_a_folder_it_did_not_build_is_left_alone(site: dict, tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(book.BookError, match="not a site built by geolab"):
        book.build_book(site["run"], tmp_path)
    assert (tmp_path / "mine.txt").read_text() == "keep me"


@pytest.mark.parametrize("made", [False, True])
def test_make_book_runs_the_course_first_only_when_its_notebooks_are_missing(tmp_path: Path, made: bool) -> None:
    """`make book` (dry run, install step skipped): the course command only without RUN/notebooks,
    then the book module on RUN into RUN/book."""
    import shutil
    import subprocess

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    run = tmp_path / "run"
    if made:
        (run / "notebooks").mkdir(parents=True)
    repo = Path(__file__).resolve().parents[1]
    # Under `make test` this make is a child of another: without the parent's flags and level it prints no
    # "make[1]: Entering/Leaving directory" lines around the recipe.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    out = subprocess.run(
        ["make", "-n", "--no-print-directory", "-o", ".venv/.geolab-installed", "book", f"RUN={run}"],
        cwd=repo, capture_output=True, text=True, check=True, env=env,
    ).stdout  # fmt: skip
    assert ("geolab course run --profile cpu --out " + str(run) in out) is not made
    assert out.strip().splitlines()[-1].endswith(f"-m geolab.course.book --run {run} --out {run}/book")


def test_the_cli_builds_the_site_and_refuses_a_run_without_notebooks(
    site: dict, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """`geolab course book RUN` is the same build as `python -m geolab.course.book`: the same pages, index.html
    printed last, exit 0; a folder without executed notebooks is a one-line user error (exit 2), not a traceback."""
    from geolab import cli

    out = tmp_path / "site"
    assert cli.main(["course", "book", str(site["run"]), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str((out / "index.html").resolve())
    assert sorted(p.name for p in out.glob("*.html")) == sorted(p.name for p in site["out"].glob("*.html"))
    assert cli.main(["course", "book", str(tmp_path / "nothing")]) == 2
    assert capsys.readouterr().err.startswith("geolab: error:")
