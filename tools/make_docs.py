#!/usr/bin/env python3
"""Build the docs site: the executed notebooks `nbs/*.ipynb` rendered to static HTML in `_docs/`.

nbdev publishes notebooks through Quarto, which cannot be installed here, so this script does the
same job with nbconvert (already installed with the dev extra) and works offline once built:

- pages in reading order (`index.ipynb` is the home page, then the numeric prefix order), a sidebar
  and previous/next links; titles from each notebook's `# Title` / `> subtitle` (nbdev's frontmatter);
- cells processed as nbdev's docs do: `#| hide`, `#| include: false` and `#| default_exp` cells
  dropped, `#| echo: false` / `#| output: false` honoured, `#| hide_line` lines removed, every
  `#|` directive stripped; exported code is shown (nbdev shows `show_doc` signatures instead, which
  needs the library imported at build time; here the exported code *is* the tutorial);
- equations rendered at build time with KaTeX (node), so pages need no script and no network;
  KaTeX (MIT licence, copied into `_docs/_static/katex/` with its LICENSE) is fetched with
  `npm pack` from the npm registry at a pinned version and checked against its pinned sha512;
- figures are the notebooks' own inline PNGs (data URIs); markdown images are embedded;
- links to notebooks (`08_render.ipynb`, `nbs/08_render.ipynb` from the README/index) point at the
  generated pages; other project markdown files that pages link to (`benchmarks/README.md`) become
  pages too; other project files are copied. Links that resolve nowhere are reported.

Run: `make docs` (= `python tools/make_docs.py`); `--out DIR` to build elsewhere, `--strict` to fail
on any warning (unresolved link, equation KaTeX cannot parse), `--katex-tgz FILE` to use a KaTeX
tarball already on disk instead of asking npm.
"""

import argparse, base64, hashlib, html, io, json, posixpath, re, shutil, subprocess, sys, tarfile, tempfile, time
from pathlib import Path
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent / "docs"
PROJECT = "ipsm"
# KaTeX from the npm registry; the digest is npm's `dist.integrity` for this version.
KATEX_VERSION = "0.19.1"
KATEX_SHA512 = "jG8uKntjSEcm2EpQOh0XturpPuuC9r3Sq5HLHdsFdWZT27E672SF19QEi+of0/YeOy15lDgRhKvr5614uRrEfA=="
WIDGET_NOTE = '<div class="ipsm-widget-note">Interactive widget: open this notebook in Jupyter (or VS Code) and run it to use it.</div>'
MARKER = ".ipsm-docs"  # marks an output folder as ours: only such a folder is deleted and rebuilt
_re_num = re.compile(r"^(\d+)_")
_re_token = re.compile(r"@@KATEX(\d+)@@")
_EXTERNAL = ("http:", "https:", "mailto:", "ftp:", "data:", "javascript:", "//")


def notebooks(nbs=ROOT / "nbs"):
    "The site's notebooks in reading order: index first, then by numeric prefix, then the rest by name."

    def key(p):
        m = _re_num.match(p.name)
        return (0 if p.stem == "index" else 1 if m else 2, int(m.group(1)) if m else 0, p.name)

    skip = lambda p: p.name.startswith(("_", ".")) or p.name.endswith(".tmp.ipynb")
    return sorted((p for p in Path(nbs).glob("*.ipynb") if not skip(p)), key=key)


def page_name(nb: Path) -> str:
    "Output file of notebook `nb`, relative to the site root."
    return nb.with_suffix(".html").name


def plain(md: str) -> str:
    "A markdown title as plain text (for <title> and the sidebar)."
    return re.sub(r"[*`]", "", md).strip()


def rel_href(target: str, frm: str) -> str:
    "Relative URL from page `frm` to `target` (both relative to the site root, posix)."
    return posixpath.relpath(target, posixpath.dirname(frm) or ".")


# --- KaTeX -------------------------------------------------------------------------------------
def _npm_pack(dest: Path) -> Path:
    npm = shutil.which("npm")
    if not npm:
        sys.exit("make docs needs npm to fetch KaTeX (Debian: apt-get install nodejs npm), or pass --katex-tgz katex-%s.tgz" % KATEX_VERSION)
    r = subprocess.run([npm, "pack", f"katex@{KATEX_VERSION}", "--prefer-offline", "--silent", "--pack-destination", str(dest)], capture_output=True, text=True)
    tgz = dest / f"katex-{KATEX_VERSION}.tgz"
    if r.returncode or not tgz.exists():
        sys.exit(f"`npm pack katex@{KATEX_VERSION}` failed (is the npm registry reachable?):\n{r.stderr.strip()}")
    return tgz


def install_katex(static: Path, tmp: Path, tgz: Path | None = None) -> Path:
    "Unpack KaTeX's CSS, fonts and LICENSE into `static/katex/`; return the path of katex.js for node."
    tgz = Path(tgz) if tgz else _npm_pack(tmp)
    data = tgz.read_bytes()
    digest = base64.b64encode(hashlib.sha512(data).digest()).decode()
    if digest != KATEX_SHA512:
        sys.exit(f"{tgz}: sha512 does not match KaTeX {KATEX_VERSION} from the npm registry; delete it and retry")
    dest = static / "katex"
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for m in tar.getmembers():
            if not m.isfile():
                continue
            name = m.name.removeprefix("package/")
            if name == "dist/katex.js":
                out = tmp / "katex.js"
            elif name in ("dist/katex.min.css", "LICENSE"):
                out = dest / Path(name).name
            elif name.startswith("dist/fonts/"):
                out = dest / "fonts" / Path(name).name
            else:
                continue
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(tar.extractfile(m).read())
    return tmp / "katex.js"


def render_math(snippets, katex_js: Path):
    "KaTeX HTML for each `(tex, display)` snippet, and a KaTeX error message (or None) for each."
    node = shutil.which("node") or shutil.which("nodejs")
    if not node:
        sys.exit("make docs needs node to render equations (Debian: apt-get install nodejs)")
    r = subprocess.run([node, str(HERE / "katex_render.js"), str(katex_js)], input=json.dumps(snippets), capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"KaTeX rendering failed:\n{r.stderr.strip()}")
    return json.loads(r.stdout)


# --- notebook processing (nbdev's doc processors, without Quarto) --------------------------------
def process_nb(nb):
    "Drop and clean cells in place as nbdev's docs do; returns the notebook's frontmatter."
    from fastcore.nbio import NbCell, cell_frontmatter, nb_frontmatter

    fm = nb_frontmatter(_FmView(nb))
    cells, first_md = [], True
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "raw":
            continue  # frontmatter or raw LaTeX: not part of the page
        if cell.cell_type == "markdown":
            src = cell.source
            if first_md and re.search(r"^#\s+\S", src, re.M):  # the `# Title` / `> subtitle` cell (nbdev's frontmatter):
                cell.source = re.sub(r"^-\s+\S.*:.*\S\s*$\n?", "", src, flags=re.M).strip()  # drop `- key: value` lines
                cell.metadata.setdefault("tags", []).append("ipsm-title")
            elif cell_frontmatter(src) or re.fullmatch(r"#+\s+.*\s+-\s*", src.strip()):
                continue  # nbdev's rm_header_dash
            first_md = False
            cells.append(cell)
            continue
        nc = NbCell(i, cell)
        d = nc.directives
        if "hide" in d or d.get("include") == "false" or "default_exp" in d:
            continue
        nc.remove_directives()
        src = "\n".join(l for l in nc.source.splitlines() if not re.search(r"#\|\s*hide_line\s*$", l)).strip()
        cell.source = src
        if d.get("output") == "false":
            cell.outputs = []
        if d.get("echo") == "false":
            cell.metadata.setdefault("transient", {})["remove_source"] = True
        if not src and not cell.outputs:
            continue
        tags = cell.metadata.setdefault("tags", [])
        tags += [f"ipsm-{k}" for k in ("export", "exporti", "exports", "slow", "gpu", "notest") if k in d]
        cell.outputs = [_widget_note(o) if "application/vnd.jupyter.widget-view+json" in o.get("data", {}) else o for o in cell.get("outputs", [])]
        cells.append(cell)
    nb.cells = cells
    nb.metadata.pop("widgets", None)
    return fm


class _FmView:
    "The attributes `fastcore.nbio.nb_frontmatter` reads, over an nbformat notebook."

    def __init__(self, nb):
        self.cells, self.metadata = nb.cells, nb.metadata


def _widget_note(o):
    "A widget's view has no meaning without a kernel: say so instead of showing nothing."
    import nbformat

    return nbformat.from_dict({"output_type": "display_data", "metadata": {}, "data": {"text/html": WIDGET_NOTE}})


# --- the site ------------------------------------------------------------------------------------
class Site:
    def __init__(self, out: Path):
        try:
            import nbconvert, bs4  # noqa: F401  (the dev extra: `make install`)
        except ImportError as e:
            sys.exit(f"make docs needs nbconvert ({e}): run `make install` first")
        from jinja2 import pass_context
        from nbconvert import HTMLExporter
        from nbconvert.exporters.templateexporter import TemplateExporter
        from nbconvert.filters.highlight import Highlight2HTML
        from nbconvert.filters.widgetsdatatypefilter import WidgetsDataTypeFilter
        from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath

        self.out, self.warnings, self.math, self._math_idx = out, [], [], {}
        self.nbs = notebooks()
        self.pages = {}  # source path -> output name
        for p in self.nbs:
            self.pages[p.resolve()] = page_name(p)
        if (ROOT / "nbs" / "index.ipynb").exists():
            self.pages[(ROOT / "README.md").resolve()] = "index.html"
        self.queue, self.copies, self.page = [], {}, None
        site = self

        class Renderer(IPythonRenderer):
            def block_math(self, body):
                return site.math_token(body, True)

            def inline_math(self, body):
                return site.math_token(body, False)

            def latex_environment(self, name, body):
                return site.math_token(f"\\begin{{{name}}}{body}\\end{{{name}}}", True)

            def link(self, text, url, title=None):
                return super().link(text, site.link(url), title)

            def inline_html(self, h):
                return super().inline_html(site.html_links(h))

            def block_html(self, h):
                return super().block_html(site.html_links(h))

        class Exporter(HTMLExporter):
            @pass_context
            def markdown2html(self, context, source):
                path = context.get("resources", {}).get("metadata", {}).get("path", "")
                cell = context.get("cell", {})
                r = Renderer(
                    escape=False,
                    attachments=cell.get("attachments", {}),
                    embed_images=True,
                    path=path,
                    anchor_link_text=self.anchor_link_text,
                    exclude_anchor_links=self.exclude_anchor_links,
                )
                return MarkdownWithMath(renderer=r).render(source)

            def from_notebook_node(self, nb, resources=None, **kw):
                # HTMLExporter's own version re-parses every page with BeautifulSoup only to add alt
                # text and tabindex attributes (half of the build time): register its two filters, skip that.
                lexer = nb.metadata.get("language_info", {}).get("pygments_lexer", "ipython3")
                self.register_filter("highlight_code", Highlight2HTML(pygments_lexer=lexer, parent=self))
                self.register_filter("filter_data_type", WidgetsDataTypeFilter(notebook_metadata={}, parent=self, resources=resources))
                body, res = TemplateExporter.from_notebook_node(self, nb, resources, **kw)
                return re.sub(r"<img (?![^>]*\balt=)", '<img alt="figure from the notebook" ', body), res

        self.exporter = Exporter(
            template_name="ipsm", extra_template_basedirs=[str(HERE / "templates")], exclude_input_prompt=True, exclude_output_prompt=True, embed_images=True
        )

    # links ---------------------------------------------------------------------------------------
    def math_token(self, tex, display):
        key = (tex.strip(), display)
        if key not in self._math_idx:
            self._math_idx[key] = len(self.math)
            self.math.append([*key, self.page["source"]])
        return f"@@KATEX{self._math_idx[key]}@@"

    def link(self, url):
        "The site URL for a link written in a notebook (relative to nbs/, or to the repo root as in README)."
        if not url or url.startswith(("#", *_EXTERNAL)) or ":" in url.split("/")[0]:
            return url
        parts = urlsplit(url)
        rel = unquote(parts.path)
        src = self.page["src_dir"]
        cands = [(src / rel).resolve(), (ROOT / rel).resolve()]
        target = next((c for c in cands if c.exists()), None)
        frag = f"#{parts.fragment}" if parts.fragment else ""
        if target is None or not target.is_relative_to(ROOT) or target.is_dir():
            why = (
                "is outside the project"
                if target is not None and not target.is_relative_to(ROOT)
                else "is a folder"
                if target is not None
                else "does not exist"
            )
            self.warn(f"link `{url}` {why}: fix the link (pages can link notebooks and project files)")
            return url
        name = self.pages.get(target)
        if name is None:
            name = target.relative_to(ROOT).as_posix()
            if target.suffix == ".md":
                name = name[:-3] + ".html"
                self.pages[target] = name
                self.queue.append(target)
            else:
                self.copies[target] = name
        return rel_href(name, self.page["name"]) + frag

    def html_links(self, h):
        return re.sub(r'(<a\s[^>]*href=")([^"]*)(")', lambda m: m.group(1) + html.escape(self.link(html.unescape(m.group(2)))) + m.group(3), h)

    def warn(self, msg):
        self.warnings.append(f"{self.page['source']}: {msg}")

    # pages ---------------------------------------------------------------------------------------
    def nav(self, name):
        items = []
        for p in self.nbs:
            m = _re_num.match(p.name)
            items.append(
                dict(href=rel_href(page_name(p), name), title=self.titles[p], current=page_name(p) == name, number=m.group(1) if m else "", name=page_name(p))
            )
        return items

    def render(self, src: Path, nb, fm, name):
        nav = self.nav(name)
        i = next((k for k, it in enumerate(nav) if it["current"]), None)
        title = plain(fm.get("title", src.stem))
        resources = {
            "metadata": {"name": src.stem, "path": str(src.parent)},
            "ipsm": dict(
                root="../" * name.count("/"),
                nav=nav,
                project=PROJECT,
                source=src.relative_to(ROOT).as_posix(),
                html_title=title if src.stem == "index" else f"{title} – {PROJECT}",
                prev=nav[i - 1] if i else None,
                next=nav[i + 1] if i is not None and i + 1 < len(nav) else None,
            ),
        }
        body, _ = self.exporter.from_notebook_node(nb, resources=resources)
        return body

    def build(self, katex_tgz=None):
        import nbformat

        t0 = time.time()
        if self.out.exists():
            shutil.rmtree(self.out)
        static = self.out / "_static"
        (static / "jupyterlab").mkdir(parents=True)
        lab = next(Path(d) / "static" for d in self.exporter.template_paths if (Path(d) / "static" / "index.css").exists())
        for f in ("index.css", "theme-light.css"):
            shutil.copy(lab / f, static / "jupyterlab" / f)
        shutil.copy(HERE / "site.css", static / "site.css")
        docs = []
        for p in self.nbs:
            nb = nbformat.read(p, as_version=4)
            docs.append((p, nb, process_nb(nb)))
        self.titles = {p: plain(fm.get("title", p.stem)) for p, _, fm in docs}
        html_pages = {}
        for p, nb, fm in docs:
            self.page = dict(source=p.relative_to(ROOT).as_posix(), src_dir=p.parent, name=page_name(p))
            html_pages[page_name(p)] = self.render(p, nb, fm, page_name(p))
        while self.queue:  # project markdown files that pages link to
            md = self.queue.pop(0)
            name = self.pages[md]
            self.page = dict(source=md.relative_to(ROOT).as_posix(), src_dir=md.parent, name=name)
            text = md.read_text()
            m = re.search(r"^#\s+(.*\S)\s*$", text, re.M)
            nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(text, id="page")])  # fixed id: same bytes every build
            html_pages[name] = self.render(md, nb, {"title": m.group(1) if m else md.name}, name)
        with tempfile.TemporaryDirectory() as tmp:
            katex_js = install_katex(static, Path(tmp), katex_tgz)
            rendered = render_math([[tex, disp] for tex, disp, _ in self.math], katex_js)
        for (tex, disp, source), (_, err) in zip(self.math, rendered):
            if err:
                self.warnings.append(f"{source}: KaTeX cannot render `{tex[:80]}`: {err}")
        for name, body in html_pages.items():
            out = self.out / name
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(self.fill_math(body, rendered))
        for src, name in self.copies.items():
            (self.out / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, self.out / name)
        (self.out / ".nojekyll").write_text("")  # GitHub Pages: serve _static/ as is
        (self.out / MARKER).write_text("Built by tools/make_docs.py; the whole folder is replaced by the next build.\n")
        return dict(pages=list(html_pages), seconds=time.time() - t0, equations=len(self.math), warnings=self.warnings)

    def fill_math(self, body, rendered):
        "Put KaTeX's HTML in place of the math tokens; in attributes (heading ids) put the TeX back."
        tex = lambda m: ("$$%s$$" if self.math[int(m.group(1))][1] else "$%s$") % self.math[int(m.group(1))][0]
        in_attr = lambda a: _re_token.sub(lambda m: html.escape(tex(m)), a.group(0))
        body = re.sub(r'="[^"<>]*@@KATEX\d+@@[^"<>]*"', in_attr, body)
        return _re_token.sub(lambda m: rendered[int(m.group(1))][0], body)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "_docs"), help="output folder (default: _docs/)")
    ap.add_argument("--strict", action="store_true", help="exit with an error on any warning")
    ap.add_argument("--katex-tgz", default=None, help=f"a katex-{KATEX_VERSION}.tgz on disk instead of `npm pack`")
    a = ap.parse_args(argv)
    out = Path(a.out).resolve()
    if ROOT.is_relative_to(out) or (out != ROOT / "_docs" and out.is_dir() and any(out.iterdir()) and not (out / MARKER).exists()):
        sys.exit(f"--out {out} is not empty and not a previous docs build: pick a new or empty folder")
    res = Site(out).build(a.katex_tgz)
    for w in res["warnings"]:
        print("warning:", w, file=sys.stderr)
    print(f"docs: {len(res['pages'])} pages, {res['equations']} equations, {len(res['warnings'])} warnings in {res['seconds']:.1f}s -> {out}/index.html")
    if a.strict and res["warnings"]:
        sys.exit(1)
    return res


if __name__ == "__main__":
    main()
