"""The report page's building blocks: number formatting for people, sortable and filterable HTML tables, and the
inline CSS and JavaScript that make them work offline (no library, nothing fetched)."""

from __future__ import annotations

import html
import json
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

MISSING = "–"  # an en dash: no value
FILTER_KEYS = {"dataset": "dataset", "samples_per_class": "few-shot size", "method": "method", "backbone": "backbone"}

CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5em auto;max-width:1200px;padding:0 1em;
color:#222;line-height:1.4}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #ddd}
.scroll{overflow-x:auto;max-width:100%;margin:.8em 0}
table{border-collapse:collapse;font-size:.82em}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:right;white-space:nowrap;vertical-align:top}
th{background:#f3f3f3;position:sticky;top:0}
td.t{text-align:left}
table.sortable th{cursor:pointer;user-select:none}
table.sortable th[aria-sort=ascending]::after{content:" \\25B2"}
table.sortable th[aria-sort=descending]::after{content:" \\25BC"}
details summary{cursor:pointer;color:#1f5f99}
details div{white-space:normal;text-align:left;font-family:ui-monospace,monospace;font-size:.95em}
figure{margin:1em 0}img{max-width:100%;height:auto}
figcaption,.note{color:#555;font-size:.9em}
.filters{display:flex;flex-wrap:wrap;gap:.6em 1.2em;align-items:center;background:#f7f7f7;padding:.5em .8em;
border:1px solid #e3e3e3;position:sticky;top:0;z-index:2}
.filters label{font-size:.9em}.filters select,.filters input{margin-left:.3em;max-width:16em}
"""

# Clicking a header sorts its table by the cells' data-v (numbers numerically, missing last); the filter bar hides
# rows of every table.filterable whose data-* attributes differ from the chosen values.
JS = """
(()=>{
const num=v=>v!==''&&v!=null&&!isNaN(v)?parseFloat(v):null;
function sortBy(th){
  const table=th.closest('table'),body=table.tBodies[0],i=[...th.parentNode.children].indexOf(th);
  const dir=th.getAttribute('aria-sort')==='ascending'?'descending':'ascending';
  table.querySelectorAll('th').forEach(h=>h.removeAttribute('aria-sort'));th.setAttribute('aria-sort',dir);
  const key=r=>{const c=r.children[i];return c?(c.dataset.v??c.textContent.trim()):'';};
  const rows=[...body.rows].sort((a,b)=>{
    const x=key(a),y=key(b),nx=num(x),ny=num(y);
    if(x===''||y==='')return (x==='')-(y==='');
    const c=nx!==null&&ny!==null?nx-ny:String(x).localeCompare(String(y));
    return dir==='ascending'?c:-c;});
  rows.forEach(r=>body.appendChild(r));
}
document.querySelectorAll('table.sortable th').forEach(th=>th.addEventListener('click',()=>sortBy(th)));
const controls=[...document.querySelectorAll('.filters [data-key]')];
function apply(){
  const want=controls.filter(c=>c.value!=='').map(c=>[c.dataset.key,c.value]);
  document.querySelectorAll('table.filterable tbody tr').forEach(r=>{
    r.hidden=!want.every(([k,v])=>k==='text'?r.textContent.toLowerCase().includes(v.toLowerCase())
      :(r.dataset[k]===undefined||r.dataset[k]===v));});
}
controls.forEach(c=>['input','change'].forEach(e=>c.addEventListener(e,apply)));
window.addEventListener('load',()=>{document.body.dataset.imagesLoaded=
  [...document.images].filter(i=>i.complete&&i.naturalWidth>0).length;});
})();
"""


def missing(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x)) or (x is pd.NA) or (x is pd.NaT)


def number(x: Any, digits: int = 3) -> str:
    """A number for people: integers (and whole floats) as integers with thousands separators, other values at
    3-4 significant digits without exponents where readable; missing values as an en dash."""
    if missing(x):
        return MISSING
    if isinstance(x, bool):
        return str(x).lower()
    if not isinstance(x, numbers.Number):
        return str(x)
    x = float(x)
    if math.isinf(x):
        return "∞" if x > 0 else "-∞"
    if x.is_integer() and abs(x) < 1e15:
        return f"{int(x):,}"
    a = abs(x)
    if a >= 1000:
        return f"{x:,.0f}"
    if a >= 1:
        return f"{x:.{max(digits + 1 - len(str(int(a))), 0)}f}"
    if a >= 0.001:
        return f"{x:.{digits}f}"
    return f"{x:.{digits - 1}g}"


def interval(mean: Any, half: Any) -> str:
    """`0.930 ± 0.042`, or the mean alone without an interval."""
    if missing(mean):
        return MISSING
    return number(mean) if missing(half) else f"{number(mean)} ± {number(half)}"


def p_value(p: Any) -> str:
    if missing(p):
        return MISSING
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def config_cell(config: Mapping[str, Any]) -> str:
    """A configuration as a compact `k=v` list that folds into a details element (rows stay one line high)."""
    if not config:
        return MISSING
    items = [f"{k}={number(v) if isinstance(v, float) else v}" for k, v in config.items()]
    head = ", ".join(items[:2]) + (", …" if len(items) > 2 else "")
    if len(items) <= 2:
        return html.escape(head)
    return f"<details><summary>{html.escape(head)}</summary><div>{'<br>'.join(map(html.escape, items))}</div></details>"


@dataclass(frozen=True)
class Column:
    """One column of an HTML table: the frame's column `key`, its heading, how a value reads (`show(value, row)`,
    the row a dict of the frame's columns: text, or HTML when `raw`), and whether it is text (left-aligned, sorted
    alphabetically)."""

    key: str
    heading: str = ""
    show: Callable[[Any, Mapping[str, Any]], str] | None = None
    text: bool = False
    raw: bool = False


def sort_value(x: Any) -> str:
    if missing(x):
        return ""
    if isinstance(x, (dict, list)):
        return json.dumps(x, sort_keys=True)
    return str(x)


def table(df: pd.DataFrame, columns: Sequence[Column], filterable: bool = True, cls: str = "") -> str:
    """An HTML table that sorts by any column on a click; each row carries its dataset, few-shot size, method and
    backbone as data attributes, for the filter bar. Wrapped in a box that scrolls sideways on its own."""
    head = "".join(f"<th>{html.escape(c.heading or c.key)}</th>" for c in columns)
    body = []
    for row in df.to_dict("records"):  # plain dicts: a pandas Series per row costs more than the row's HTML
        attrs = "".join(f" data-{k.replace('_', '-')}='{html.escape(str(row[k]), quote=True)}'"
                        for k in FILTER_KEYS if k in row and not missing(row[k]))
        cells = []
        for c in columns:
            value = row.get(c.key)
            shown = c.show(value, row) if c.show else (number(value) if not c.text else
                                                       (MISSING if missing(value) else str(value)))
            content = shown if c.raw else html.escape(shown)
            cells.append(f"<td{' class=t' if c.text else ''} data-v='{html.escape(sort_value(value), quote=True)}'>"
                         f"{content}</td>")
        body.append(f"<tr{attrs}>{''.join(cells)}</tr>")
    classes = " ".join(x for x in ("sortable", "filterable" if filterable else "", cls) if x)
    return (f"<div class='scroll'><table class='{classes}'><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table></div>")


def filter_bar(df: pd.DataFrame) -> str:
    """Drop-down filters (dataset, few-shot size, method, backbone) and a free-text filter for every table."""
    parts = []
    for key, label in FILTER_KEYS.items():
        values = sorted({str(v) for v in df[key] if not missing(v)}, key=lambda v: (len(v), v)) if key in df else []
        if len(values) < 2:
            continue
        options = "".join(f"<option>{html.escape(v)}</option>" for v in values)
        camel = key.split("_")[0] + "".join(w.title() for w in key.split("_")[1:])  # the row's dataset key
        parts.append(f"<label>{html.escape(label)}<select data-key='{camel}'>"
                     f"<option value=''>all</option>{options}</select></label>")
    parts.append("<label>text<input data-key='text' type='search' placeholder='filter rows'></label>")
    return f"<div class='filters'>{''.join(parts)}</div>"
