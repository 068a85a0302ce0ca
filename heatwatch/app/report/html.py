"""One self-contained HTML page: CSS inline, plots as base64 PNG, no external requests.

A dispatcher may open it from a mail attachment on a machine without network, so nothing is linked.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from html import escape
from typing import Any

import pandas as pd

from heatwatch.app.report.plots import Png

CSS = """
body { font-family: "Noto Sans CJK SC", "Noto Sans SC", "WenQuanYi Zen Hei", "Microsoft YaHei", "PingFang SC",
       system-ui, sans-serif; margin: 24px auto; max-width: 1120px; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { border-bottom: 2px solid #d62728; padding-bottom: 4px; margin-top: 2em; }
.meta { color: #555; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: 6px 10px; margin: 8px 0; }
.warn { background: #fdecea; border-left: 4px solid #d62728; padding: 6px 10px; margin: 8px 0; font-weight: bold; }
figure { margin: 12px 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { color: #555; font-size: 0.9em; }
table { border-collapse: collapse; margin: 8px 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.cold td { background: #e8f0fb; }
"""

# Records on each <img> whether the browser decoded it (data-decoded="WxH" or "failed"), so a
# headless check or a person with dev tools can tell a broken image from an empty plot.
DECODE_SCRIPT = """
window.addEventListener("load", function () {
  document.querySelectorAll("img").forEach(function (img) {
    img.dataset.decoded = (img.complete && img.naturalWidth > 0) ? img.naturalWidth + "x" + img.naturalHeight : "failed";
  });
  document.body.dataset.loaded = "1";
});
"""


def img(png: Png, caption: str, ident: str) -> str:
    b64 = base64.b64encode(png.data).decode("ascii")
    return (
        f'<figure id="{escape(ident)}"><img src="data:image/png;base64,{b64}" width="{png.width}" height="{png.height}" '
        f'alt="{escape(png.alt)}"><figcaption>{escape(caption)}</figcaption></figure>'
    )


def note(text: str, warn: bool = False) -> str:
    return f'<p class="{"warn" if warn else "note"}">{escape(text)}</p>'


def _cell(value: Any) -> tuple[str, bool]:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "", False
    if isinstance(value, bool):
        return ("yes" if value else "no"), False
    if isinstance(value, float):
        return f"{value:.1f}", True
    if isinstance(value, int):
        return str(value), True
    return str(value), False


def table(rows: Iterable[Sequence[Any]], headers: Sequence[str], cold: Sequence[bool] | None = None) -> str:
    out = ["<table><thead><tr>", *(f"<th>{escape(h)}</th>" for h in headers), "</tr></thead><tbody>"]
    for i, row in enumerate(rows):
        cls = ' class="cold"' if cold is not None and i < len(cold) and cold[i] else ""
        out.append(f"<tr{cls}>")
        for v in row:
            text, num = _cell(v)
            out.append(f'<td class="num">{escape(text)}</td>' if num else f"<td>{escape(text)}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def page(title: str, meta: str, body: Sequence[str]) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="zh-CN"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
        f'<h1>{escape(title)}</h1><p class="meta">{meta}</p>'
        + "\n".join(body)
        + f"<script>{DECODE_SCRIPT}</script></body></html>\n"
    )
