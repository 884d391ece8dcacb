"""Open and click tracking in HTML: links through a redirect, and a pixel (spec §10).

The HTML is located with the standard library's `HTMLParser` (a tolerant tokenizer that gives
each start tag's position and text) and changed only where a link's `href` value or the pixel
goes: everything else stays byte for byte as the sender wrote it, which a parse-and-serialise
library would not promise. Links marked `data-mt-no-track`, and links that are not http(s)
(mailto:, anchors, the unsubscribe placeholder), are left alone.
"""

import html
import re
from collections.abc import Callable
from html.parser import HTMLParser
from urllib.parse import quote, urlsplit, urlunsplit

NO_TRACK = "data-mt-no-track"
_SAFE = ":/?#[]@!$&'()*+,;=%~"  # what stays as it is in a URL (and escapes already made)
# One attribute of a start tag, as HTMLParser reads them: name, then an optional value.
_ATTRIBUTE = re.compile(r"""\s*([^\s"'>/=]+)(?:\s*=\s*("[^"]*"|'[^']*'|[^\s"'=<>`]+))?""")
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)


class _Links(HTMLParser):
    """Collects the (line, column, tag text, href) of each trackable `<a>` start tag."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[int, int, str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "a":
            return
        names = {name for name, _ in attrs}
        href = next((value for name, value in attrs if name == "href"), None)
        if NO_TRACK in names or not href or not href.lower().startswith(("http://", "https://")):
            return
        text = self.get_starttag_text() or ""
        line, column = self.getpos()
        self.found.append((line, column, text, href))


def track_links(document: str, redirect: Callable[[str], str]) -> str:
    """`document` with each trackable link's target replaced by `redirect(target)`."""
    parser = _Links()
    parser.feed(document)
    parser.close()
    if not parser.found:
        return document
    starts = [0]  # offset of each line, as HTMLParser counts them (by "\n")
    starts += [m.end() for m in re.finditer("\n", document)]
    out, done = [], 0
    for line, column, text, href in parser.found:
        offset = starts[line - 1] + column
        if document[offset : offset + len(text)] != text:
            continue  # (cannot happen with HTMLParser's positions; never guess)
        tag = _with_href(text, html.escape(redirect(href), quote=True))
        if tag is None:
            continue
        out.append(document[done:offset] + tag)
        done = offset + len(text)
    out.append(document[done:])
    return "".join(out)


def _with_href(tag: str, value: str) -> str | None:
    """The start tag `<a ...>` with its `href` attribute's value (only that) replaced."""
    position = 2  # after "<a"
    while (found := _ATTRIBUTE.match(tag, position)) and found.end() > position:
        if found.group(1).lower() == "href" and found.group(2) is not None:
            start, end = found.span(2)
            return f'{tag[:start]}"{value}"{tag[end:]}'
        position = found.end()
    return None


def add_pixel(document: str, url: str) -> str:
    """`document` with an invisible 1x1 image loading `url`, before `</body>` if there is one."""
    pixel = (
        f'<img src="{html.escape(url, quote=True)}" width="1" height="1" alt=""'
        ' style="display:block;border:0;width:1px;height:1px" />'
    )
    ends = list(_BODY_END.finditer(document))
    if not ends:
        return document + pixel
    at = ends[-1].start()
    return document[:at] + pixel + document[at:]


def redirect_location(target: str) -> str:
    """A link's target as a `Location` header can carry it: an IDNA host, the rest
    percent-encoded (a header is ASCII)."""
    parts = urlsplit(target.strip())
    host = parts.hostname or ""
    try:
        host = host.encode("idna").decode("ascii")
    except UnicodeError:
        host = quote(host)
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    if parts.username is not None:
        netloc = parts.netloc.rsplit("@", 1)[0] + "@" + netloc
    return urlunsplit(
        (parts.scheme, quote(netloc, safe=_SAFE), *(quote(p, safe=_SAFE) for p in parts[2:]))
    )
