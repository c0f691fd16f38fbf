"""A small document model and its two writers: GitHub Markdown and self-contained HTML.

The report is built once as a list of blocks; both writers walk the same list, so the two files never
disagree. Text may use two inline marks, ``**bold**`` and ```code```, which Markdown keeps and HTML
translates. The HTML embeds every PNG as a base64 ``data:`` URI and carries a small inline stylesheet
and script, so it opens offline, from an e-mail attachment or a CI artefact, with nothing to fetch.
"""

from __future__ import annotations

import base64
import html
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass
class Heading:
    level: int
    text: str


@dataclass
class Text:
    text: str


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Cell:
    """A table cell; ``bold`` marks the leading number (the mean) as the best in its column."""

    text: str
    bold: bool = False


@dataclass
class Table:
    header: list[str]
    rows: list[list[Cell]]
    caption: str = ""


@dataclass
class Figure:
    """A PNG already written into the output directory, referenced by file name."""

    filename: str
    alt: str
    caption: str = ""


@dataclass
class Details:
    """A collapsible list (HTML ``<details>``; a plain list in Markdown)."""

    summary: str
    items: list[str] = field(default_factory=list)


Block = Heading | Text | Bullets | Table | Figure | Details

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;max-width:1100px;
margin:2em auto;padding:0 1em;color:#1b1b1b;line-height:1.45}
h1{font-size:1.6em;border-bottom:2px solid #0072B2;padding-bottom:.2em}
h2{font-size:1.3em;margin-top:2em;border-bottom:1px solid #ccc}h3{font-size:1.1em;margin-top:1.5em}
table{border-collapse:collapse;margin:.8em 0;font-size:.9em;font-variant-numeric:tabular-nums}
th,td{border:1px solid #d0d0d0;padding:.3em .6em;text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left}th{background:#eef3f8}tr:nth-child(even) td{background:#f8f8f8}
caption{caption-side:bottom;text-align:left;font-size:.85em;color:#555;padding-top:.3em}
figure{margin:1em 0}img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.85em;color:#555}code{background:#f2f2f2;padding:0 .25em;border-radius:3px}
ul{padding-left:1.4em}details{margin:.5em 0}summary{cursor:pointer}
""".strip()

# Marks every <img> with data-loaded="ok"|"failed" and <body> with data-images="ok"|"failed" once all
# have settled; a headless browser's --dump-dom then shows whether the embedded images decoded.
SCRIPT = """
(function(){var imgs=Array.prototype.slice.call(document.images),left=imgs.length,failed=0;
function finish(){document.body.setAttribute('data-images',failed?'failed':'ok');}
function settle(img,ok){img.setAttribute('data-loaded',ok?'ok':'failed');if(!ok){failed++;}
if(--left===0){finish();}}
if(!left){finish();return;}
imgs.forEach(function(img){if(img.complete){settle(img,img.naturalWidth>0);}else{
img.addEventListener('load',function(){settle(img,img.naturalWidth>0);});
img.addEventListener('error',function(){settle(img,false);});}});})();
""".strip()


def _inline_html(text: str) -> str:
    """Escape, then turn ``**x**`` into <strong> and ```x``` into <code>."""
    escaped = html.escape(text, quote=False)
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", escaped)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"


def _md_cell(cell: Cell) -> str:
    text = cell.text.replace("|", "\\|")
    if cell.bold:
        head, _, tail = text.partition(" ")
        text = f"**{head}**" + (f" {tail}" if tail else "")
    return text


def to_markdown(blocks: list[Block]) -> str:
    """GitHub-flavoured Markdown; figures are relative links to the PNGs beside ``report.md``."""
    out: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            out.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, Text):
            out.append(block.text)
        elif isinstance(block, Bullets):
            out.append("\n".join(f"- {item}" for item in block.items))
        elif isinstance(block, Table):
            lines = [
                "| " + " | ".join(h.replace("|", "\\|") for h in block.header) + " |",
                "|" + "|".join([":---"] + ["---:"] * (len(block.header) - 1)) + "|",
            ]
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
            if block.caption:
                lines += ["", f"*{block.caption}*"]
            out.append("\n".join(lines))
        elif isinstance(block, Figure):
            out.append(f"![{block.alt}]({block.filename})" + (f"\n\n*{block.caption}*" if block.caption else ""))
        elif isinstance(block, Details):
            out.append(
                f"<details><summary>{html.escape(block.summary)}</summary>\n\n"
                + "\n".join(f"- {item}" for item in block.items)
                + "\n\n</details>"
            )
    return "\n\n".join(out) + "\n"


def png_data_uri(path: Path) -> str:
    """``data:image/png;base64,...`` for a PNG file (its signature checked: a broken file must not embed)."""
    payload = path.read_bytes()
    if not payload.startswith(PNG_SIGNATURE):
        raise ValueError(f"{path} is not a PNG file")
    return "data:image/png;base64," + base64.b64encode(payload).decode("ascii")


def _html_cell(cell: Cell, tag: str = "td") -> str:
    text = html.escape(cell.text, quote=False)
    if cell.bold:
        head, _, tail = text.partition(" ")
        text = f"<strong>{head}</strong>" + (f" {tail}" if tail else "")
    return f"<{tag}>{text}</{tag}>"


def to_html(blocks: list[Block], image_dir: Path, title: str) -> str:
    """One self-contained HTML page: inline CSS and script, images as data URIs read from ``image_dir``."""
    body: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            body.append(f'<h{block.level} id="{slug(block.text)}">{_inline_html(block.text)}</h{block.level}>')
        elif isinstance(block, Text):
            body.append(f"<p>{_inline_html(block.text)}</p>")
        elif isinstance(block, Bullets):
            body.append("<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in block.items) + "</ul>")
        elif isinstance(block, Table):
            head = "".join(f"<th>{html.escape(h, quote=False)}</th>" for h in block.header)
            rows = "".join("<tr>" + "".join(_html_cell(c) for c in row) + "</tr>" for row in block.rows)
            caption = f"<caption>{_inline_html(block.caption)}</caption>" if block.caption else ""
            body.append(f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif isinstance(block, Figure):
            uri = png_data_uri(image_dir / block.filename)
            caption = f"<figcaption>{_inline_html(block.caption)}</figcaption>" if block.caption else ""
            body.append(
                f'<figure><img src="{uri}" alt="{html.escape(block.alt)}" '
                f'data-file="{html.escape(block.filename)}">{caption}</figure>'
            )
        elif isinstance(block, Details):
            items = "".join(f"<li>{_inline_html(i)}</li>" for i in block.items)
            body.append(f"<details><summary>{_inline_html(block.summary)}</summary><ul>{items}</ul></details>")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>\n{STYLE}\n</style>\n</head>\n"
        '<body data-images="pending">\n' + "\n".join(body) + f"\n<script>\n{SCRIPT}\n</script>\n</body>\n</html>\n"
    )


def write_text_atomic(path: Path, text: str) -> None:
    """Write beside the target, then rename: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
