"""`make docs`: the notebooks rendered to a static site (tools/make_docs.py), checked as a reader would.

One build into a temporary folder; then every page is parsed with BeautifulSoup (nbconvert's own
dependency) and checked: a page per notebook, the sidebar in reading order with the notebooks' titles,
every internal link and image resolving inside the site, equations rendered by the local KaTeX (no
CDN, no script, no TeX left over), `#| hide` cells absent and directives stripped, outputs shown.
"""

import importlib.util, json, os, re, shutil
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from bs4 import BeautifulSoup

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / "nbs"


def _load_make_docs():
    spec = importlib.util.spec_from_file_location("make_docs", ROOT / "tools" / "make_docs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _notebooks():
    "Independent of make_docs: nbs/*.ipynb, index first, then by numeric prefix."
    nbs = [p for p in NBS.glob("*.ipynb") if not p.name.startswith(("_", ".")) and not p.name.endswith(".tmp.ipynb")]
    num = lambda p: int(p.name.split("_")[0]) if p.name.split("_")[0].isdigit() else 10**6
    return sorted(nbs, key=lambda p: (p.stem != "index", num(p), p.name))


def _title(nb):
    md = next(c for c in nb["cells"] if c["cell_type"] == "markdown")
    return re.search(r"^#\s+(.*\S)", "".join(md["source"]), re.M).group(1)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    if not (shutil.which("node") and shutil.which("npm")):  # on the project's machines and CI they are
        msg = "make docs needs node and npm (Debian: apt-get install nodejs npm)"
        pytest.fail(msg) if os.environ.get("CI") else pytest.skip(msg)
    out = tmp_path_factory.mktemp("docs") / "_docs"
    res = _load_make_docs().main(["--out", str(out)])
    raw = {p.relative_to(out).as_posix(): p.read_text() for p in out.rglob("*.html")}
    pages = {name: BeautifulSoup(text, "html.parser") for name, text in raw.items()}
    return out, res, pages, raw


def test_build_has_no_warnings(site):
    _, res, _, _ = site
    assert not res["warnings"], "make docs warned (broken link or equation KaTeX cannot parse):\n" + "\n".join(res["warnings"])


def test_a_page_per_notebook_and_nav_in_reading_order(site):
    out, _, pages, _ = site
    nbs = _notebooks()
    assert nbs[0].name == "index.ipynb" and len(nbs) > 5
    want = [(p.with_suffix(".html").name, _title(json.loads(p.read_text()))) for p in nbs]
    for name, title in want:
        assert name in pages, f"no page for {name}"
        h1 = pages[name].select_one("main .celltag_ipsm-title h1")
        assert h1 is not None and h1.get_text().rstrip("¶").strip() == re.sub(r"[*`]", "", title), name
        assert title.replace("`", "").replace("*", "") in pages[name].title.get_text()
    for name, soup in pages.items():
        nav = [(a["href"].split("/")[-1], a.get_text()) for a in soup.select(".ipsm-nav a")]
        assert [n for n, _ in nav] == [n for n, _ in want], f"{name}: sidebar not in reading order"
        for (_, text), (_, title) in zip(nav, want):
            assert re.sub(r"[*`]", "", title) in text
    # previous/next follow the same order
    for (a, _), (b, _) in zip(want, want[1:]):
        assert pages[a].select_one(".ipsm-pager a.next")["href"] == b
        assert pages[b].select_one(".ipsm-pager a.prev")["href"] == a


def test_internal_links_and_images_resolve(site):
    out, _, pages, _ = site
    n_links = 0
    for name, soup in pages.items():
        for tag, attr in (("a", "href"), ("img", "src"), ("link", "href"), ("script", "src")):
            for el in soup.find_all(tag):
                url = el.get(attr)
                if url is None:
                    continue
                parts = urlsplit(url)
                if parts.scheme in ("http", "https", "mailto") and tag == "a":
                    continue  # a link a reader follows
                if parts.scheme == "data":
                    assert tag == "img" and re.match(r"data:image/(png|jpeg|svg\+xml);base64,", url), f"{name}: {url[:40]}"
                    continue
                assert not parts.scheme and not url.startswith("//"), f"{name}: <{tag}> loads {url} from the network"
                assert not url.endswith(".ipynb") and ".ipynb#" not in url, f"{name}: link {url} to a notebook, not its page"
                target = (out / name).parent / unquote(parts.path) if parts.path else out / name
                target = target.resolve()
                assert target.is_relative_to(out.resolve()) and target.is_file(), f"{name}: {tag} {url} does not resolve"
                if parts.fragment and target.suffix == ".html":
                    t = pages[target.relative_to(out.resolve()).as_posix()]
                    # browsers try the fragment as written, then percent-decoded (nbconvert's ids are encoded)
                    assert t.find(id=parts.fragment) or t.find(id=unquote(parts.fragment)), f"{name}: {url}: no such anchor"
                n_links += 1
    assert n_links > 100
    idx = pages["index.html"]
    linked = {a["href"] for a in idx.select("main a[href]")}
    assert {"08_render.html", "16_score.html"} <= linked, "README-style links nbs/NN_x.ipynb must point at pages"


def test_math_is_rendered_by_the_local_katex(site):
    out, res, pages, raw = site
    assert res["equations"] > 50
    css = out / "_static" / "katex" / "katex.min.css"
    assert css.is_file() and (out / "_static" / "katex" / "LICENSE").is_file()
    for font in re.findall(r"url\((fonts/[^)]+\.woff2)\)", css.read_text()):
        assert (css.parent / font).is_file(), font
    for name, soup in pages.items():
        assert soup.find("script") is None, f"{name}: pages need no script (math is rendered at build time)"
        assert soup.find("link", href=re.compile(r"_static/katex/katex\.min\.css$")), name
        assert "@@KATEX" not in raw[name] and "katex-error" not in raw[name], f"{name}: equation not rendered"
        for md in soup.select(".jp-RenderedMarkdown"):  # prose outside equations and code
            skip = {id(t) for el in md.select(".katex, code, pre") for t in el.find_all(string=True)}
            text = "".join(t for t in md.find_all(string=True) if id(t) not in skip)
            assert not re.search(r"\$\$|\$\\[A-Za-z]|\\(frac|mathbb|mathcal|sum)\b", text), f"{name}: raw TeX left: {text[:200]}"
    assert pages["16_score.html"].select(".katex-display") and pages["16_score.html"].select(".katex .mord")


def _cells(p):
    nb = json.loads(p.read_text())
    for c in nb["cells"]:
        if c["cell_type"] == "code":
            yield "".join(c["source"]), c.get("outputs", [])


def test_cells_as_nbdev_docs_show_them(site):
    out, _, pages, _ = site
    for p in _notebooks():
        soup = pages[p.with_suffix(".html").name]
        code = [el.get_text() for el in soup.select(".jp-InputArea-editor")]
        assert not [c for c in code if re.search(r"^\s*#\s*\|", c, re.M)], f"{p.name}: directive left in shown code"
        text = soup.get_text()
        n_png = 0
        for src, outputs in _cells(p):
            hidden = re.match(r"\s*#\|\s*hide\b", src)
            body = "\n".join(l for l in src.splitlines() if not re.match(r"\s*#\|", l)).strip()
            if hidden:
                assert body not in code, f"{p.name}: #| hide cell shown: {body[:60]}"
                continue
            if re.match(r"\s*#\|\s*default_exp", src):
                continue
            if body:
                assert any(body.splitlines()[0] in c for c in code), f"{p.name}: code cell missing: {body[:60]}"
            for o in outputs:
                n_png += "image/png" in o.get("data", {})
                line = next((l for l in "".join(o.get("text", "")).splitlines() if l.strip()), None)
                if line:
                    assert line.strip() in text, f"{p.name}: output missing: {line[:60]}"
        nb_cells = json.loads(p.read_text())["cells"]  # markdown attachments are figures of the page too
        n_png += sum("image/png" in a for c in nb_cells if c["cell_type"] == "markdown" for a in c.get("attachments", {}).values())
        imgs = soup.select("main img[src^='data:image/png']")
        assert len(imgs) == n_png, f"{p.name}: {len(imgs)} figures on the page, {n_png} in the notebook"


def test_directives_on_a_small_notebook():
    "The directives the real notebooks do not use yet, on a notebook built here (no site build)."
    from nbformat.v4 import new_code_cell as code, new_markdown_cell as md, new_notebook, new_output

    png = new_output("display_data", data={"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"})
    widget = new_output("display_data", data={"application/vnd.jupyter.widget-view+json": {"model_id": "x"}, "text/plain": "IntSlider()"})
    nb = new_notebook(
        cells=[
            code("#| hide\nfrom fastcore.test import *"),
            md("# T\n\n> sub\n- order: 3"),
            code("#| default_exp x"),
            code("#| export\ndef f(): pass"),
            code("#| echo: false\nplot()", outputs=[png]),
            code("#| output: false\nprint(1)", outputs=[new_output("stream", text="1\n")]),
            code("a = 1\nb = 2 #| hide_line"),
            code("#| include: false\nsecret()"),
            md("## Internal -"),
            code("w", outputs=[widget]),
        ]
    )
    md_ = _load_make_docs()
    fm = md_.process_nb(nb)
    assert fm == {"title": "T", "description": "sub", "order": 3}
    src = [c.source for c in nb.cells]
    assert src == ["# T\n\n> sub", "def f(): pass", "plot()", "print(1)", "a = 1", "w"]
    assert nb.cells[0].metadata.tags == ["ipsm-title"] and "ipsm-export" in nb.cells[1].metadata.tags
    assert nb.cells[2].metadata.transient == {"remove_source": True} and nb.cells[2].outputs == [png]
    assert nb.cells[3].outputs == []
    assert "Interactive widget" in nb.cells[5].outputs[0].data["text/html"]
