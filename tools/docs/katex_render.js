// Render TeX snippets to HTML with KaTeX at build time (called by tools/make_docs.py).
// usage: node katex_render.js /path/to/katex.js  < [[tex, displayMode], ...]  > [[html, error|null], ...]
// A snippet KaTeX cannot parse is rendered in KaTeX's error colour and its message returned.
"use strict";
const katex = require(process.argv[2]);
let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (d) => { input += d; });
process.stdin.on("end", () => {
  const out = JSON.parse(input).map(([tex, displayMode]) => {
    const opts = { displayMode, strict: "ignore", output: "htmlAndMathml" };
    try { return [katex.renderToString(tex, { ...opts, throwOnError: true }), null]; }
    catch (e) { return [katex.renderToString(tex, { ...opts, throwOnError: false }), String(e.message)]; }
  });
  process.stdout.write(JSON.stringify(out));
});
