"""Multipart uploads: create, upload part, list parts, complete (ETag = md5(part md5s)-N), abort, list uploads.

Parts are data files of their own until completion, which concatenates them (copy_file_range) into one fsync'd
temp file and, in one index transaction, makes the object visible and forgets the upload.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from pathlib import Path

from aiohttp import web

from storaged.s3 import checksums
from storaged.s3.context import S3Request, now
from storaged.s3.errors import S3Error, invalid_argument, malformed_xml, no_such_upload
from storaged.s3.index import ObjectRow, PartRow, UploadRow, new_id
from storaged.s3.listing import parse_max_keys
from storaged.s3.object_ops import check_key, request_meta, version_headers
from storaged.s3.payload import Body
from storaged.s3.xml import Element, child_text, document, element, iso8601, leaf, parse

MAX_PARTS = 10000


def _xml(root_tag: str, children: list[Element]) -> web.Response:
    return web.Response(body=document(element(root_tag, children)), content_type="application/xml")


async def _upload(ctx: S3Request) -> UploadRow:
    upload_id = ctx.query["uploadId"]
    upload = await asyncio.to_thread(ctx.store.index.get_upload, upload_id)
    if upload is None or upload.bucket != ctx.bucket or upload.key != ctx.key:
        raise no_such_upload(upload_id)
    return upload


async def create_upload(ctx: S3Request) -> web.StreamResponse:
    await ctx.owned_bucket()
    check_key(ctx.key)
    meta: dict[str, object] = dict(request_meta(ctx.request))
    algorithm = ctx.request.headers.get("x-amz-checksum-algorithm", "").lower()
    if algorithm:
        if algorithm not in checksums.ALGORITHMS:
            raise invalid_argument("Checksum algorithm provided is unsupported.", "x-amz-checksum-algorithm",
                                   algorithm)
        meta["checksum-algorithm"] = algorithm
    upload = UploadRow(new_id(), ctx.bucket, ctx.key, now(), meta)
    await asyncio.to_thread(ctx.store.index.create_upload, upload)
    headers = {"x-amz-checksum-algorithm": algorithm.upper()} if algorithm else {}
    body = document(element("InitiateMultipartUploadResult", [leaf("Bucket", ctx.bucket), leaf("Key", ctx.key),
                                                              leaf("UploadId", upload.upload_id)]))
    return web.Response(body=body, content_type="application/xml", headers=headers)


def _part_number(value: str | None) -> int:
    try:
        number = int(value or "")
    except ValueError:
        number = 0
    if not 1 <= number <= MAX_PARTS:
        raise invalid_argument("Part number must be an integer between 1 and 10000, inclusive", "partNumber",
                               value or "")
    return number


async def upload_part(ctx: S3Request) -> web.StreamResponse:
    await ctx.owned_bucket()
    number = _part_number(ctx.query.get("partNumber"))
    if "x-amz-copy-source" in ctx.request.headers:
        raise S3Error("NotImplemented", "UploadPartCopy is not implemented by this server", 501)
    upload = await _upload(ctx)
    received = await ctx.store.receive(Body(ctx.request, ctx.auth))
    file = await ctx.store.place(ctx.bucket, received.path)
    part = PartRow(number, file, received.size, received.etag, now(), received.checksum)
    try:
        replaced = await asyncio.to_thread(ctx.store.index.put_part, upload.upload_id, part)
    except KeyError:
        await ctx.store.delete_files(ctx.bucket, [file])
        raise no_such_upload(upload.upload_id) from None
    if replaced:
        await ctx.store.delete_files(ctx.bucket, [replaced])
    ctx.extra["bytes_in"] = received.size
    headers = {"ETag": f'"{received.etag}"'}
    if received.checksum_algorithm and received.checksum:
        headers[checksums.header_name(received.checksum_algorithm)] = received.checksum
    return web.Response(headers=headers)


def _part_xml(part: PartRow, algorithm: str | None) -> Element:
    children = [leaf("PartNumber", part.part_number), leaf("LastModified", iso8601(part.modified)),
                leaf("ETag", f'"{part.etag}"'), leaf("Size", part.size)]
    if algorithm and part.checksum:
        children.append(leaf(f"Checksum{algorithm.upper()}", part.checksum))
    return element("Part", children)


async def list_parts(ctx: S3Request) -> web.StreamResponse:
    await ctx.owned_bucket()
    upload = await _upload(ctx)
    marker = int(ctx.query.get("part-number-marker", "0") or 0)
    max_parts = parse_max_keys(ctx.query.get("max-parts"), "max-parts")
    parts = await asyncio.to_thread(ctx.store.index.list_parts, upload.upload_id, marker, max_parts + 1)
    truncated = len(parts) > max_parts
    parts = parts[:max_parts]
    algorithm = upload.meta.get("checksum-algorithm")
    children: list[Element] = [leaf("Bucket", ctx.bucket), leaf("Key", ctx.key), leaf("UploadId", upload.upload_id),
                              leaf("StorageClass", "STANDARD"), leaf("PartNumberMarker", marker),
                              leaf("NextPartNumberMarker", parts[-1].part_number if parts else marker),
                              leaf("MaxParts", max_parts), leaf("IsTruncated", truncated)]
    if algorithm:
        children.append(leaf("ChecksumAlgorithm", algorithm.upper()))
    children += [_part_xml(p, algorithm) for p in parts]
    return _xml("ListPartsResult", children)


def _requested_parts(body: bytes) -> list[tuple[int, str]]:
    root = parse(body)
    if root.tag != "CompleteMultipartUpload":
        raise malformed_xml()
    wanted = []
    for part in root.findall("Part"):
        number, etag = child_text(part, "PartNumber"), child_text(part, "ETag")
        if number is None or etag is None or not number.strip().isdigit():
            raise malformed_xml()
        wanted.append((int(number), etag.strip().strip('"')))
    if not wanted:
        raise malformed_xml()
    numbers = [n for n, _ in wanted]
    if numbers != sorted(set(numbers)):
        raise S3Error("InvalidPartOrder", "The list of parts was not in ascending order. The parts list must be "
                      "specified in order by part number.", 400)
    return wanted


def _assemble(paths: list[Path], dest: Path) -> None:
    with open(dest, "wb") as out:
        for path in paths:
            with open(path, "rb") as part:
                size = os.fstat(part.fileno()).st_size
                while size:
                    n = os.copy_file_range(part.fileno(), out.fileno(), size)
                    if n == 0:
                        raise OSError(f"{path}: part file shorter than expected")
                    size -= n
        out.flush()
        os.fsync(out.fileno())


def _composite_checksum(algorithm: str | None, parts: list[PartRow]) -> str | None:
    if not algorithm or any(not p.checksum for p in parts):
        return None
    hasher = checksums.hasher(algorithm)
    if hasher is None:
        return None
    for part in parts:
        hasher.update(base64.b64decode(part.checksum or ""))
    return f"{hasher.value()}-{len(parts)}"


async def complete_upload(ctx: S3Request) -> web.StreamResponse:
    info = await ctx.owned_bucket()
    upload = await _upload(ctx)
    wanted = _requested_parts(await Body(ctx.request, ctx.auth).read_all(1 << 20))
    stored = {p.part_number: p for p in await asyncio.to_thread(ctx.store.index.list_parts, upload.upload_id)}
    chosen: list[PartRow] = []
    for i, (number, etag) in enumerate(wanted):
        part = stored.get(number)
        if part is None or part.etag != etag:
            raise S3Error("InvalidPart", "One or more of the specified parts could not be found. The part may not "
                          "have been uploaded, or the specified entity tag may not match the part's entity tag.",
                          400, PartNumber=str(number), ETag=etag)
        if i < len(wanted) - 1 and part.size < ctx.services.min_part_size:
            raise S3Error("EntityTooSmall", "Your proposed upload is smaller than the minimum allowed object size.",
                          400, PartNumber=str(number), MinSizeAllowed=str(ctx.services.min_part_size))
        chosen.append(part)
    md5s = b"".join(bytes.fromhex(p.etag) for p in chosen)
    etag = f"{hashlib.md5(md5s).hexdigest()}-{len(chosen)}"  # noqa: S324 (the S3 multipart ETag rule)
    temp = ctx.store.tmp / f"{new_id()}.tmp"
    paths = [ctx.store.path(ctx.bucket, p.file) for p in chosen]
    try:
        await asyncio.to_thread(_assemble, paths, temp)
    except BaseException:
        await asyncio.to_thread(temp.unlink, True)
        raise
    meta = dict(upload.meta)
    meta["parts"] = len(chosen)
    algorithm = meta.get("checksum-algorithm")
    composite = _composite_checksum(algorithm, chosen)
    if composite:
        meta["checksum"] = composite
    row = ObjectRow(bucket=ctx.bucket, key=ctx.key, version_id="", size=sum(p.size for p in chosen), etag=etag,
                    modified=now(), meta=meta)
    row.file = await ctx.store.place(ctx.bucket, temp)
    garbage = await asyncio.to_thread(ctx.store.index.complete_upload, upload.upload_id, row, info.versioning)
    if garbage is None:
        await ctx.store.delete_files(ctx.bucket, [row.file])
        raise no_such_upload(upload.upload_id)
    await ctx.store.delete_files(ctx.bucket, garbage)
    children = [leaf("Location", f"/{ctx.bucket}/{ctx.key}"), leaf("Bucket", ctx.bucket), leaf("Key", ctx.key),
                leaf("ETag", f'"{etag}"')]
    if composite and algorithm:
        children.append(leaf(f"Checksum{algorithm.upper()}", composite))
    response = _xml("CompleteMultipartUploadResult", children)
    response.headers.update(version_headers(info, row))
    return response


async def abort_upload(ctx: S3Request) -> web.StreamResponse:
    await ctx.owned_bucket()
    upload = await _upload(ctx)
    files = await asyncio.to_thread(ctx.store.index.finish_upload, upload.upload_id)
    await ctx.store.delete_files(ctx.bucket, files)
    return web.Response(status=204)


async def list_uploads(ctx: S3Request) -> web.StreamResponse:
    await ctx.owned_bucket()
    prefix = ctx.query.get("prefix", "")
    key_marker = ctx.query.get("key-marker", "")
    id_marker = ctx.query.get("upload-id-marker", "") if key_marker else ""
    max_uploads = parse_max_keys(ctx.query.get("max-uploads"), "max-uploads")
    uploads = await asyncio.to_thread(ctx.store.index.list_uploads, ctx.bucket, prefix, key_marker, id_marker,
                                      max_uploads + 1)
    truncated = len(uploads) > max_uploads
    uploads = uploads[:max_uploads]
    children: list[Element] = [leaf("Bucket", ctx.bucket), leaf("KeyMarker", key_marker),
                              leaf("UploadIdMarker", id_marker), leaf("Prefix", prefix),
                              leaf("MaxUploads", max_uploads), leaf("IsTruncated", truncated)]
    if truncated and uploads:
        children += [leaf("NextKeyMarker", uploads[-1].key), leaf("NextUploadIdMarker", uploads[-1].upload_id)]
    for u in uploads:
        children.append(element("Upload", [leaf("Key", u.key), leaf("UploadId", u.upload_id),
                                           leaf("StorageClass", "STANDARD"), leaf("Initiated", iso8601(u.initiated))]))
    return _xml("ListMultipartUploadsResult", children)
