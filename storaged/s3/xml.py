"""S3 XML: response documents, error documents with a RequestId, and safe parsing of request bodies."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from typing import Any

from defusedxml import ElementTree as SafeET

from storaged.s3.errors import S3Error, malformed_xml

Element = ET.Element
NS = "http://s3.amazonaws.com/doc/2006-03-01/"
MAX_REQUEST_XML = 1 << 20


def iso8601(ts: float) -> str:
    """S3's timestamp format in XML bodies (millisecond precision, UTC)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"


def http_date(ts: float) -> str:
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(ts))


def element(tag: str, children: Iterable[Any] = (), text: str | None = None) -> ET.Element:
    el = ET.Element(tag)
    if text is not None:
        el.text = text
    for child in children:
        if child is not None:
            el.append(child)
    return el


def leaf(tag: str, value: object) -> ET.Element:
    """A text element; booleans in S3's lowercase spelling."""
    text = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return element(tag, text=text)


def document(root: ET.Element, namespaced: bool = True) -> bytes:
    if namespaced:
        root.set("xmlns", NS)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="utf-8")


def error_document(err: S3Error, resource: str, request_id: str) -> bytes:
    children = [leaf("Code", err.code), leaf("Message", err.message)]
    children += [leaf(k, v) for k, v in err.extra.items() if v]
    children += [leaf("Resource", resource), leaf("RequestId", request_id)]
    return document(element("Error", children), namespaced=False)


def parse(body: bytes) -> ET.Element:
    """Parses a request document (entities and DTDs refused); the namespace is stripped from every tag."""
    if len(body) > MAX_REQUEST_XML:
        raise S3Error("MaxMessageLengthExceeded", "Your request was too big.", 400)
    try:
        root: ET.Element = SafeET.fromstring(body)
    except Exception as exc:  # defusedxml raises ParseError and its own DefusedXmlException family
        raise malformed_xml() from exc
    for el in root.iter():
        if isinstance(el.tag, str) and el.tag.startswith("{"):
            el.tag = el.tag.split("}", 1)[1]
    return root


def child_text(el: ET.Element, tag: str, default: str | None = None) -> str | None:
    found = el.find(tag)
    if found is None:
        return default
    return found.text or ""
