"""The path a proxied request reaches the instance with, and the rule it keeps: no dot-segments.

The proxies forward the request target as the client sent it (still percent-encoded: re-encoding
what Django decoded would change what the instance receives), after the prefix Django routed on
(`/tunnel/{id}`, `/gateway/{id}/{slug}`, nothing on an instance's own host).

Why no dot-segment, anywhere: `/gateway/{id}/{slug}` must reach `/webhooks/{slug}` and below only,
but the instance, not the gateway, decides what a path means. Most servers resolve `..` before
routing (http.server, nginx, Go's and Node's file servers, Express), so
`/webhooks/open/../../private.txt` reached `/private.txt`, a path the tunnel's policy protects.
Servers differ in what else they decode first: `%2e`, a second round of percent-decoding (a proxy
in front of an app), `%2f` and backslashes as separators, `;params` (Tomcat, Jetty), NUL, overlong
UTF-8, Unicode that normalises to dots. Whatever one of them might read as `.` or `..` is refused.
The same holds for the tunnel and an instance's own host, although those open the whole instance
to one policy: the agent (and a tenant's own server) tells its management routes from its traffic
routes by path, and an upstream that resolved a dot-segment after making that decision would be
confused by it. Browsers resolve dot-segments before they send a request (WHATWG URL), so no
honest client sends one; refusing them costs nothing.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote, unquote, unquote_to_bytes, urlsplit

DOT_SEGMENT_DETAIL = "no such path: the gateway does not forward dot-segments ('.' or '..', plain or percent-encoded)"
# A segment still changing after this many rounds of percent-decoding was made to get past a check.
MAX_DECODE_ROUNDS = 8
_SEPARATORS = re.compile(r"[/\\]")
_OVERLONG = ((b"\xc0\xae", b"."), (b"\xc0\xaf", b"/"), (b"\xc1\x9c", b"\\"))
_NOT_TARGET_SAFE = re.compile(r"[^\x21-\x7e]")


class Refused(Exception):
    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(detail)


def raw_path(request) -> str:
    """The request's path as the client sent it (percent-encoded): waitress's REQUEST_URI,
    gunicorn's RAW_URI, else Django's decoded path encoded again."""
    raw = request.META.get("RAW_URI") or request.META.get("REQUEST_URI")
    if not raw:
        return quote(request.path, safe="/:@!$&'()*+,;=-._~")
    path = raw.split("?", 1)[0].split("#", 1)[0]
    if not path.startswith("/"):  # absolute-form (`GET http://host/path HTTP/1.1`)
        path = urlsplit(path).path or "/"
    return path


def _plain(segment: str) -> bool:
    """Cannot decode to anything but itself, so cannot be a dot-segment."""
    return segment.isascii() and "." not in segment and "%" not in segment


def _reads_as_dot(data: bytes) -> bool:
    if b"\0" in data:  # C string handling ends the segment here
        return True
    for overlong, char in _OVERLONG:
        data = data.replace(overlong, char)
    text = data.decode("utf-8", "replace")
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)  # U+FF0E FULLWIDTH FULL STOP is '.', U+2025 is '..'
    return any(piece.split(";", 1)[0].rstrip() in (".", "..") for piece in _SEPARATORS.split(text))


def _is_dot_segment(segment: str) -> bool:
    data = segment.encode("latin-1", "replace")  # WSGI strings carry the request's bytes as latin-1
    for _ in range(MAX_DECODE_ROUNDS):
        if _reads_as_dot(data):
            return True
        decoded = unquote_to_bytes(data)
        if decoded == data:
            return False
        data = decoded
    return True


def has_dot_segment(path: str) -> bool:
    if _plain(path):
        return False
    return any(_is_dot_segment(segment) for segment in path.split("/") if segment and not _plain(segment))


def _target_safe(text: str) -> str:
    """Bytes a request target cannot carry as they are (raw UTF-8, controls) percent-encoded."""
    if _NOT_TARGET_SAFE.search(text) is None:
        return text
    return _NOT_TARGET_SAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode("latin-1" if m.group() <= "\xff" else "utf-8")), text)


def upstream_target(request, prefix: tuple[str, ...], base: str = "") -> str:
    """`base` + the request's raw path after the routed `prefix` segments + its query: the target
    the instance receives. Refused (404) for any dot-segment, and when the raw prefix is not what
    Django routed on (an encoded slash inside the instance id or the slug)."""
    path = raw_path(request)
    if has_dot_segment(path):
        raise Refused(DOT_SEGMENT_DETAIL)
    segments = path.split("/")
    count = len(prefix) + 1
    if segments[0] or len(segments) < count or any(raw != want and unquote(raw) != want for raw, want in zip(segments[1:count], prefix)):
        raise Refused(f"no such path: {path[:200]!r} does not name {'/'.join(prefix)!r}")
    tail = "/" + "/".join(segments[count:])
    target = base + ("" if base and tail == "/" else tail)
    query = request.META.get("QUERY_STRING", "")
    return _target_safe(target + ("?" + query if query else ""))
