"""One self-contained HTML page: text, tables and PNG pictures, with nothing outside the file.

    page = document("msseg predict", [heading("Scans", level=2), table_html(table)])
    write_html("pred/report.html", page)

The pictures are inline (``data:image/png;base64``), the style sheet and the one script are in
the page, and the page names no other file or address: it opens the same from a USB stick, an
e-mail attachment or a machine without network. The script only sorts tables: a click on a
column heading of a `Table` orders its rows by that column (numbers as numbers, using a cell's
``data-sort`` value where the text is not one, e.g. ``0.61 ± 0.05``), a second click reverses
them, and ``aria-sort`` tells screen readers. Without the script the tables read the same,
unsorted.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from msseg.io.atomic import atomic_write_text

__all__ = ["Cell", "Table", "document", "figure_html", "heading", "image_html", "paragraph",
           "preformatted", "table_html", "warnings_html", "write_html"]

# A cell: its text, or (text, sort key) where the text does not sort by itself.
Cell = str | int | float | tuple[str, float]

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:1.5em auto;
 max-width:72em;padding:0 1em;color:#1d1d1f;background:#fff;line-height:1.4}
h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:1.8em;border-bottom:1px solid #ccc}
h3{margin-top:1.4em}.meta{color:#555}
table{border-collapse:collapse;margin:.6em 0 1em;font-size:.92em}
caption{text-align:left;font-weight:600;padding:.3em 0}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f0f0f3}td:first-child,th:first-child{text-align:left}
td:not(:first-child){white-space:nowrap}
table.sortable th{cursor:pointer;user-select:none}
table.sortable th::after{content:" \\2195";color:#999}
table.sortable th[aria-sort=ascending]::after{content:" \\2191";color:#000}
table.sortable th[aria-sort=descending]::after{content:" \\2193";color:#000}
.note{color:#555;font-size:.88em;max-width:60em}
.views{display:flex;flex-wrap:wrap;gap:1.6em;align-items:flex-start;margin:.4em 0 1em}
figure{margin:0}figcaption{font-size:.85em;color:#333;text-align:center;margin-top:1.3em}
.frame{position:relative;display:inline-block;padding:1.2em}
.frame img{display:block;image-rendering:pixelated}
.end{position:absolute;font-weight:700;font-size:.85em;color:#444}
.end.top{top:0;left:50%;transform:translateX(-50%)}
.end.bottom{bottom:0;left:50%;transform:translateX(-50%)}
.end.left{left:0;top:50%;transform:translateY(-50%)}
.end.right{right:0;top:50%;transform:translateY(-50%)}
.legend{display:flex;flex-wrap:wrap;gap:1.2em;font-size:.88em;margin:.3em 0}
.swatch{display:inline-block;width:1em;height:1em;vertical-align:middle;margin-right:.35em;
 border:1px solid #555}
.warnings{background:#fff4e0;border-left:4px solid #e09000;padding:.4em .8em;margin:.6em 0}
.warnings li{margin:.2em 0}pre{background:#f6f6f8;padding:.6em;overflow-x:auto;font-size:.85em}
"""

_SORT_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("thead th").forEach(function (th, column) {
    th.addEventListener("click", function () {
      var up = th.getAttribute("aria-sort") !== "ascending";
      table.querySelectorAll("thead th").forEach(function (o) { o.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", up ? "ascending" : "descending");
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      function key(row) {
        var cell = row.cells[column];
        var text = cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort")
                                                  : cell.textContent.trim();
        var number = parseFloat(text);
        return isNaN(number) || !/^[-+]?[0-9.]/.test(text) ? text.toLowerCase() : number;
      }
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (typeof x !== typeof y) { x = String(x); y = String(y); }
        return (x < y ? -1 : x > y ? 1 : 0) * (up ? 1 : -1);
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""


@dataclass(frozen=True)
class Table:
    """A table of the page; `sortable` ones sort by a click on a column heading."""

    headers: Sequence[str]
    rows: Sequence[Sequence[Cell]]
    caption: str = ""
    note: str = ""  # a paragraph under the table
    sortable: bool = True
    links: Sequence[str] = field(default=())  # per row, the anchor its first cell links to


def escape(text: object) -> str:
    """`text` as HTML text (quotes too, so it is safe in attributes)."""
    return html.escape(str(text), quote=True)


def heading(text: str, *, level: int = 2, anchor: str = "") -> str:
    """An ``<h1>``..``<h4>``, with an ``id`` to link to when `anchor` is given."""
    ident = f' id="{escape(anchor)}"' if anchor else ""
    return f"<h{level}{ident}>{escape(text)}</h{level}>"


def paragraph(text: str, *, css: str = "") -> str:
    return f'<p class="{escape(css)}">{escape(text)}</p>' if css else f"<p>{escape(text)}</p>"


def preformatted(text: str) -> str:
    return f"<pre>{escape(text)}</pre>"


def warnings_html(warnings: Sequence[str]) -> str:
    """A highlighted list of warnings; empty text when there are none."""
    if not warnings:
        return ""
    items = "".join(f"<li>{escape(w)}</li>" for w in warnings)
    return f'<div class="warnings"><strong>Warnings</strong><ul>{items}</ul></div>'


def table_html(table: Table) -> str:
    """The table as HTML (see `Table`; nan numbers show as ``n/a``)."""
    css = ' class="sortable"' if table.sortable else ""
    caption = f"<caption>{escape(table.caption)}</caption>" if table.caption else ""
    head = "".join(f'<th scope="col">{escape(h)}</th>' for h in table.headers)
    links = list(table.links) or [""] * len(table.rows)
    body = []
    for link, row in zip(links, table.rows, strict=True):
        if len(row) != len(table.headers):
            raise ValueError(f"a row of table {table.caption!r} has {len(row)} cells for "
                             f"{len(table.headers)} columns: {list(row)}")
        cells = [_cell(value) for value in row]
        if link:
            cells[0] = (f'<td data-sort="{escape(row[0])}"><a href="#{escape(link)}">'
                        f"{escape(row[0])}</a></td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    note = f'<p class="note">{escape(table.note)}</p>' if table.note else ""
    return (f"<table{css}>{caption}<thead><tr>{head}</tr></thead><tbody>{''.join(body)}"
            f"</tbody></table>{note}")


def image_html(png: bytes, *, alt: str, width: int | None = None,
               height: int | None = None) -> str:
    """A PNG as an inline ``<img>`` (a data URI)."""
    data = base64.b64encode(png).decode("ascii")
    size = "".join(f' {name}="{value}"' for name, value in (("width", width), ("height", height))
                   if value is not None)
    return f'<img src="data:image/png;base64,{data}" alt="{escape(alt)}"{size}>'


def figure_html(png: bytes, *, caption: str, alt: str,
                ends: tuple[str, str, str, str] | None = None, width: int | None = None,
                height: int | None = None) -> str:
    """A picture with a caption; `ends` = the patient directions at its (left, right, top,
    bottom) edges, written beside the picture (e.g. ("R", "L", "A", "P") for an axial slice in
    the radiological convention)."""
    image = image_html(png, alt=alt, width=width, height=height)
    if ends is not None:
        labels = "".join(f'<span class="end {side}">{escape(text)}</span>'
                         for side, text in zip(("left", "right", "top", "bottom"), ends,
                                               strict=True))
        image = f'<div class="frame">{image}{labels}</div>'
    return f"<figure>{image}<figcaption>{escape(caption)}</figcaption></figure>"


def document(title: str, parts: Sequence[str], *, subtitle: str = "") -> str:
    """The whole page: `title` as its heading, then the HTML `parts` in order."""
    meta = f'<p class="meta">{escape(subtitle)}</p>' if subtitle else ""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title><style>{_STYLE}</style></head>\n<body>"
            f"<h1>{escape(title)}</h1>{meta}\n" + "\n".join(parts) +
            f"\n<script>{_SORT_SCRIPT}</script></body></html>\n")


def write_html(path: str | Path, page: str) -> Path:
    """Write the page atomically (`msseg.io.atomic`); returns the path."""
    return atomic_write_text(path, page)


def _cell(value: Cell) -> str:
    if isinstance(value, tuple):
        text, key = value
        return f'<td data-sort="{escape(_number(key))}">{escape(text)}</td>'
    if isinstance(value, float):
        return f'<td data-sort="{escape(_number(value))}">{escape(_number(value, 3))}</td>'
    return f"<td>{escape(value)}</td>"


def _number(value: float, digits: int | None = None) -> str:
    if math.isnan(value):
        return "n/a"
    return repr(value) if digits is None else f"{value:.{digits}f}"
