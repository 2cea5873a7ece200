"""Object operations: PutObject, GetObject (ranges, conditions), HeadObject, DeleteObject, CopyObject."""

from __future__ import annotations

import re
from urllib.parse import unquote

from aiohttp import web

from storaged.s3 import checksums
from storaged.s3.catalog import BucketInfo
from storaged.s3.context import MAX_KEY_BYTES, S3Request, now, parse_http_date
from storaged.s3.errors import S3Error, invalid_argument, no_such_key
from storaged.s3.index import NULL_VERSION, ObjectRow
from storaged.s3.payload import Body
from storaged.s3.xml import document, element, http_date, iso8601, leaf

CONTENT_HEADERS = ("content-type", "content-encoding", "content-disposition", "content-language", "cache-control",
                   "expires")
RESPONSE_OVERRIDES = {f"response-{h}": h for h in CONTENT_HEADERS}
MAX_USER_METADATA = 2048
DEFAULT_CONTENT_TYPE = "binary/octet-stream"
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def check_key(key: str) -> None:
    if len(key.encode()) > MAX_KEY_BYTES:
        raise S3Error("KeyTooLongError", "Your key is too long", 400)


def request_meta(request: web.Request) -> dict[str, str]:
    """Content headers and x-amz-meta-* user metadata to store with an object."""
    meta = {h: request.headers[h] for h in CONTENT_HEADERS if h in request.headers}
    if "content-encoding" in meta:  # aws-chunked is a transfer detail, not the object's encoding
        kept = [e.strip() for e in meta["content-encoding"].split(",") if e.strip() and e.strip() != "aws-chunked"]
        if kept:
            meta["content-encoding"] = ",".join(kept)
        else:
            del meta["content-encoding"]
    user = {k.lower(): v for k, v in request.headers.items() if k.lower().startswith("x-amz-meta-")}
    if sum(len(k) - len("x-amz-meta-") + len(v) for k, v in user.items()) > MAX_USER_METADATA:
        raise S3Error("MetadataTooLarge", "Your metadata headers exceed the maximum allowed metadata size.", 400)
    meta.setdefault("content-type", DEFAULT_CONTENT_TYPE)
    return {**meta, **user}


def version_headers(info: BucketInfo, row: ObjectRow) -> dict[str, str]:
    if info.versioning == "":
        return {}
    headers = {"x-amz-version-id": row.version_id}
    if row.delete_marker:
        headers["x-amz-delete-marker"] = "true"
    return headers


def object_headers(info: BucketInfo, row: ObjectRow) -> dict[str, str]:
    headers = {k: v for k, v in row.meta.items() if k in CONTENT_HEADERS or k.startswith("x-amz-meta-")}
    headers.update({"ETag": f'"{row.etag}"', "Last-Modified": http_date(row.modified), "Accept-Ranges": "bytes"})
    if "parts" in row.meta:
        headers["x-amz-mp-parts-count"] = str(row.meta["parts"])
    headers.update(version_headers(info, row))
    return headers


def checksum_headers(row: ObjectRow) -> dict[str, str]:
    alg, value = row.meta.get("checksum-algorithm"), row.meta.get("checksum")
    return {checksums.header_name(alg): value} if alg and value else {}


async def put_object(ctx: S3Request) -> web.StreamResponse:
    info = await ctx.owned_bucket()
    check_key(ctx.key)
    if ctx.request.headers.get("if-none-match") == "*":
        existing = await ctx.store.index_get(ctx.bucket, ctx.key)
        if existing is not None and not existing.delete_marker:
            raise S3Error("PreconditionFailed", "At least one of the pre-conditions you specified did not hold", 412)
    meta = request_meta(ctx.request)
    body = Body(ctx.request, ctx.auth)
    received = await ctx.store.receive(body)
    if received.checksum_algorithm and received.checksum:
        meta.update({"checksum-algorithm": received.checksum_algorithm, "checksum": received.checksum})
    row = ObjectRow(bucket=ctx.bucket, key=ctx.key, version_id="", size=received.size, etag=received.etag,
                    modified=now(), meta=meta)
    await ctx.store.commit(row, received, info.versioning)
    ctx.extra["bytes_in"] = row.size
    headers = {"ETag": f'"{row.etag}"', **version_headers(info, row), **checksum_headers(row)}
    return web.Response(status=200, headers=headers)


async def _find(ctx: S3Request, info: BucketInfo) -> ObjectRow:
    version_id = ctx.query.get("versionId")
    row = await ctx.store.index_get(ctx.bucket, ctx.key, version_id)
    if row is None:
        if version_id is not None:
            raise S3Error("NoSuchVersion", "The specified version does not exist.", 404, Key=ctx.key,
                          VersionId=version_id)
        raise no_such_key(ctx.key)
    if row.delete_marker:
        if version_id is not None:
            err = S3Error("MethodNotAllowed", "The specified method is not allowed against this resource.", 405)
        else:
            err = no_such_key(ctx.key)
        err.headers.update(version_headers(info, row))
        raise err
    return row


def _check_conditions(request: web.Request, row: ObjectRow) -> int | None:
    """The status a conditional GET/HEAD answers with instead of the object (304 or 412), if any."""
    etag = f'"{row.etag}"'
    if_match = request.headers.get("if-match")
    if if_match is not None and if_match.strip() not in (etag, row.etag, "*"):
        return 412
    since = request.headers.get("if-unmodified-since")
    if if_match is None and since is not None:
        ts = parse_http_date(since)
        if ts is not None and int(row.modified) > ts:
            return 412
    if_none = request.headers.get("if-none-match")
    if if_none is not None and if_none.strip() in (etag, row.etag, "*"):
        return 304
    modified_since = request.headers.get("if-modified-since")
    if if_none is None and modified_since is not None:
        ts = parse_http_date(modified_since)
        if ts is not None and int(row.modified) <= ts:
            return 304
    return None


def parse_range(value: str | None, size: int) -> tuple[int, int] | None:
    """(start, length) of a single byte range; None to send the whole object; S3Error 416 if unsatisfiable."""
    if value is None:
        return None
    match = _RANGE.match(value.strip())
    if match is None or match.group(1) == match.group(2) == "":
        return None  # several ranges or bad syntax: S3 ignores the header
    first, last = match.group(1), match.group(2)
    if first == "":
        length = min(int(last), size)
        if length == 0:
            raise _invalid_range(size)
        return size - length, length
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or (last and int(last) < start):
        raise _invalid_range(size)
    return start, end - start + 1


def _invalid_range(size: int) -> S3Error:
    return S3Error("InvalidRange", "The requested range is not satisfiable", 416, ActualObjectSize=str(size))


async def get_object(ctx: S3Request, head: bool = False) -> web.StreamResponse:
    info = await ctx.owned_bucket()
    row = await _find(ctx, info)
    headers = object_headers(info, row)
    status = _check_conditions(ctx.request, row)
    if status is not None:
        if status == 412:
            raise S3Error("PreconditionFailed", "At least one of the pre-conditions you specified did not hold", 412)
        return web.Response(status=304, headers={k: v for k, v in headers.items()
                                                 if k in ("ETag", "Last-Modified")})
    byte_range = parse_range(ctx.request.headers.get("range"), row.size)
    for param, header in RESPONSE_OVERRIDES.items():
        if param in ctx.query:
            headers[header] = ctx.query[param]
    if byte_range is None:
        start, length, status = 0, row.size, 200
        if ctx.request.headers.get("x-amz-checksum-mode", "").upper() == "ENABLED":
            headers.update(checksum_headers(row))
    else:
        start, length = byte_range
        status = 206
        headers["Content-Range"] = f"bytes {start}-{start + length - 1}/{row.size}"
    headers["Content-Length"] = str(length)
    response = web.StreamResponse(status=status, headers=headers)
    if head:
        response.content_length = length
        await response.prepare(ctx.request)
        return response
    response.content_length = length
    await response.prepare(ctx.request)
    async for data in ctx.store.read(row, start, length):
        await response.write(data)
    ctx.extra["bytes_out"] = length
    await response.write_eof()
    return response


async def head_object(ctx: S3Request) -> web.StreamResponse:
    return await get_object(ctx, head=True)


async def delete_object(ctx: S3Request) -> web.StreamResponse:
    info = await ctx.owned_bucket()
    version_id = ctx.query.get("versionId")
    removed = await ctx.store.delete(ctx.bucket, ctx.key, version_id, info.versioning)
    headers: dict[str, str] = {}
    if removed is not None and info.versioning != "":
        headers["x-amz-version-id"] = removed.version_id
        if removed.delete_marker:
            headers["x-amz-delete-marker"] = "true"
    return web.Response(status=204, headers=headers)


def parse_copy_source(value: str) -> tuple[str, str, str | None]:
    source, _, query = value.partition("?")
    source = unquote(source).lstrip("/")
    bucket, _, key = source.partition("/")
    if not bucket or not key:
        raise invalid_argument("Copy Source must mention the source bucket and key: sourcebucket/sourcekey",
                               "x-amz-copy-source", value)
    version_id = None
    if query:
        name, _, val = query.partition("=")
        if name != "versionId":
            raise invalid_argument("Unsupported copy source parameter", "x-amz-copy-source", value)
        version_id = unquote(val)
    return bucket, key, version_id


async def copy_object(ctx: S3Request) -> web.StreamResponse:
    info = await ctx.owned_bucket()
    check_key(ctx.key)
    src_bucket, src_key, src_version = parse_copy_source(ctx.request.headers["x-amz-copy-source"])
    await ctx.owned_bucket(src_bucket)
    source = await ctx.store.index_get(src_bucket, src_key, src_version)
    if source is None or source.delete_marker:
        raise no_such_key(src_key)
    directive = ctx.request.headers.get("x-amz-metadata-directive", "COPY").upper()
    if directive not in ("COPY", "REPLACE"):
        raise invalid_argument("Unknown metadata directive.", "x-amz-metadata-directive", directive)
    if directive == "COPY" and (src_bucket, src_key) == (ctx.bucket, ctx.key) and src_version is None:
        raise S3Error("InvalidRequest", "This copy request is illegal because it is trying to copy an object to "
                      "itself without changing the object's metadata, storage class, website redirect location or "
                      "encryption attributes.", 400)
    if directive == "COPY":
        meta = dict(source.meta)
    else:
        meta = request_meta(ctx.request)
        for key in ("checksum-algorithm", "checksum", "parts"):
            if key in source.meta:
                meta[key] = source.meta[key]
    temp = await ctx.store.copy_to_temp(source)
    row = ObjectRow(bucket=ctx.bucket, key=ctx.key, version_id="", size=source.size, etag=source.etag,
                    modified=now(), meta=meta)
    await ctx.store.commit_path(row, temp, info.versioning)
    body = document(element("CopyObjectResult", [leaf("LastModified", iso8601(row.modified)),
                                                 leaf("ETag", f'"{row.etag}"')]))
    headers = version_headers(info, row)
    if src_version is not None and src_version != NULL_VERSION:
        headers["x-amz-copy-source-version-id"] = src_version
    return web.Response(body=body, content_type="application/xml", headers=headers)
