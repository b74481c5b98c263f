"""HTML for the subset of Markdown the datasheet (`datasets.datasheet`) writes, for its page.

No Markdown library is installed, and the datasheet needs only a little: headings, paragraphs,
bullet lists (nested by two spaces), pipe tables, fenced code blocks, `code` spans and
_emphasis_. Every piece of text is escaped before any tag is added, so whatever a curator
typed into a name, description or licence arrives as text, never as markup; a line this
renderer does not understand becomes part of a paragraph, escaped like everything else.
"""

from __future__ import annotations

import re
from html import escape

from django.utils.safestring import SafeString, mark_safe

_HEADING = re.compile(r"^(#{1,6})\s+(.*)$")
_BULLET = re.compile(r"^( *)[-*]\s+(.*)$")
_TABLE_RULE = re.compile(r"^\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")
_EMPHASIS = re.compile(r"(?<![\w])_(?=\S)(.+?)(?<=\S)_(?![\w])")


def markdown_html(text: str) -> SafeString:
    """The datasheet's Markdown as escaped HTML (block by block, top to bottom)."""
    lines = text.replace("\r\n", "\n").split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif line.startswith("```"):
            i = _code_block(lines, i, out)
        elif match := _HEADING.match(line):
            level = len(match.group(1))
            out.append(f"<h{level}>{_inline(match.group(2).strip())}</h{level}>")
            i += 1
        elif _BULLET.match(line):
            i = _list(lines, i, out)
        elif (
            line.lstrip().startswith("|") and i + 1 < len(lines) and _TABLE_RULE.match(lines[i + 1])
        ):
            i = _table(lines, i, out)
        else:
            i = _paragraph(lines, i, out)
    # Safe: every piece of text went through escape() (_inline, _code_block) before tags.
    return mark_safe("\n".join(out))  # noqa: S308


def _inline(text: str) -> str:
    """Escaped text with `code` spans and _emphasis_ (none inside code)."""
    pieces = text.split("`")
    if len(pieces) % 2 == 0:  # an unpaired backtick stays a backtick
        pieces[-2] = pieces[-2] + "`" + pieces.pop()
    html = []
    for n, piece in enumerate(pieces):
        if n % 2:
            html.append(f"<code>{escape(piece)}</code>")
        else:
            html.append(_EMPHASIS.sub(r"<em>\1</em>", escape(piece)))
    return "".join(html)


def _code_block(lines: list[str], i: int, out: list[str]) -> int:
    end = i + 1
    while end < len(lines) and not lines[end].startswith("```"):
        end += 1
    out.append(f"<pre><code>{escape(chr(10).join(lines[i + 1 : end]))}</code></pre>")
    return end + 1


def _list(lines: list[str], i: int, out: list[str]) -> int:
    """A bullet list; an item indented deeper than the one before opens a nested list."""
    depths: list[int] = []
    while i < len(lines) and (match := _BULLET.match(lines[i])):
        indent = len(match.group(1))
        if not depths or indent > depths[-1]:
            out.append("<ul>")
            depths.append(indent)
        else:
            while len(depths) > 1 and indent < depths[-1]:
                out.append("</li></ul>")
                depths.pop()
            out.append("</li>")
        out.append(f"<li>{_inline(match.group(2))}")
        i += 1
    for _ in depths:
        out.append("</li></ul>")
    return i


def _cells(line: str) -> list[str]:
    """The cells of a table row; `\\|` is a literal bar inside a cell."""
    body = line.strip()
    body = body[1:] if body.startswith("|") else body
    body = body[:-1] if body.endswith("|") and not body.endswith("\\|") else body
    return [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", body)]


def _table(lines: list[str], i: int, out: list[str]) -> int:
    header = _cells(lines[i])
    out.append('<table class="grid"><thead><tr>')
    out.extend(f'<th scope="col">{_inline(c)}</th>' for c in header)
    out.append("</tr></thead><tbody>")
    i += 2
    while i < len(lines) and lines[i].lstrip().startswith("|"):
        cells = _cells(lines[i])
        cells = (cells + [""] * len(header))[: len(header)]  # a short or long row keeps the grid
        out.append("<tr>")
        out.append(f'<th scope="row">{_inline(cells[0])}</th>')
        out.extend(f"<td>{_inline(c)}</td>" for c in cells[1:])
        out.append("</tr>")
        i += 1
    out.append("</tbody></table>")
    return i


def _paragraph(lines: list[str], i: int, out: list[str]) -> int:
    text = []
    while (
        i < len(lines)
        and lines[i].strip()
        and not _HEADING.match(lines[i])
        and not _BULLET.match(lines[i])
        and not lines[i].startswith("```")
        and not lines[i].lstrip().startswith("|")
    ):
        text.append(lines[i].strip())
        i += 1
    if not text:  # a lone table-looking line without its rule
        text.append(lines[i].strip())
        i += 1
    out.append(f"<p>{_inline(' '.join(text))}</p>")
    return i
