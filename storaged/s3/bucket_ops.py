"""Bucket operations: ListBuckets, Create/Head/DeleteBucket, versioning, location, listings, DeleteObjects."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from urllib.parse import quote

from aiohttp import web

from storaged.s3.context import S3Request
from storaged.s3.errors import S3Error, invalid_argument, malformed_xml
from storaged.s3.index import ObjectRow
from storaged.s3.listing import decode_token, encode_token, list_objects, parse_max_keys
from storaged.s3.payload import Body
from storaged.s3.xml import Element, child_text, document, element, iso8601, leaf, parse

MAX_DELETE = 1000


def _xml(root_tag: str, children: list[Element]) -> web.Response:
    return web.Response(body=document(element(root_tag, children)), content_type="application/xml")


def _owner(ctx: S3Request) -> Element:
    return element("Owner", [leaf("ID", ctx.tenant_id), leaf("DisplayName", ctx.tenant_id)])


async def list_buckets(ctx: S3Request) -> web.StreamResponse:
    buckets = sorted(await ctx.services.catalog.list(ctx.tenant_id), key=lambda b: b.name)
    items = [element("Bucket", [leaf("Name", b.name), leaf("CreationDate", iso8601(b.created_at))])
             for b in buckets]
    return _xml("ListAllMyBucketsResult", [_owner(ctx), element("Buckets", items)])


async def create_bucket(ctx: S3Request) -> web.StreamResponse:
    body = await Body(ctx.request, ctx.auth).read_all(1 << 16)
    if body.strip():
        root = parse(body)
        if root.tag != "CreateBucketConfiguration":
            raise malformed_xml()
    info = await ctx.services.catalog.create(ctx.bucket, ctx.auth.credential)
    if await asyncio.to_thread(ctx.store.index.bucket_is_empty, info.name):
        await ctx.store.drop_bucket(info.name)  # leftovers of an earlier bucket of that name
    return web.Response(headers={"Location": f"/{info.name}"})


async def head_bucket(ctx: S3Request) -> web.StreamResponse:
    await ctx.owned_bucket()
    return web.Response(headers={"x-amz-bucket-region": ctx.services.region})


async def delete_bucket(ctx: S3Request) -> web.StreamResponse:
    await ctx.owned_bucket()
    if not await asyncio.to_thread(ctx.store.index.bucket_is_empty, ctx.bucket):
        raise S3Error("BucketNotEmpty", "The bucket you tried to delete is not empty", 409, BucketName=ctx.bucket)
    await ctx.services.catalog.delete(ctx.bucket)
    await ctx.store.drop_bucket(ctx.bucket)
    return web.Response(status=204)


async def get_location(ctx: S3Request) -> web.StreamResponse:
    await ctx.owned_bucket()
    region = "" if ctx.services.region == "us-east-1" else ctx.services.region
    return web.Response(body=document(element("LocationConstraint", text=region)), content_type="application/xml")


async def get_versioning(ctx: S3Request) -> web.StreamResponse:
    info = await ctx.owned_bucket()
    return _xml("VersioningConfiguration", [leaf("Status", info.versioning)] if info.versioning else [])


async def put_versioning(ctx: S3Request) -> web.StreamResponse:
    await ctx.owned_bucket()
    root = parse(await Body(ctx.request, ctx.auth).read_all(1 << 16))
    status = child_text(root, "Status", "")
    if root.tag != "VersioningConfiguration" or status not in ("Enabled", "Suspended"):
        raise malformed_xml()
    await ctx.services.catalog.set_versioning(ctx.bucket, status or "")
    return web.Response()


def _encoder(ctx: S3Request) -> Callable[[str], str]:
    encoding = ctx.query.get("encoding-type")
    if encoding not in (None, "url"):
        raise invalid_argument("Invalid Encoding Method specified in Request", "encoding-type", encoding or "")

    def encode(value: str) -> str:
        return quote(value, safe="/") if encoding else value

    return encode


def _content(row: ObjectRow, encode: Callable[[str], str], owner: Element | None = None) -> Element:
    children = [leaf("Key", encode(row.key)), leaf("LastModified", iso8601(row.modified)),
                leaf("ETag", f'"{row.etag}"'), leaf("Size", row.size), leaf("StorageClass", "STANDARD")]
    if row.meta.get("checksum-algorithm"):
        children.append(leaf("ChecksumAlgorithm", str(row.meta["checksum-algorithm"]).upper()))
    if owner is not None:
        children.append(owner)
    return element("Contents", children)


async def list_objects_v1(ctx: S3Request) -> web.StreamResponse:
    await ctx.owned_bucket()
    encode = _encoder(ctx)
    prefix, delimiter = ctx.query.get("prefix", ""), ctx.query.get("delimiter", "")
    marker = ctx.query.get("marker", "")
    max_keys = parse_max_keys(ctx.query.get("max-keys"))
    page = await asyncio.to_thread(list_objects, ctx.store.index, ctx.bucket, prefix, delimiter, marker, max_keys)
    children: list[Element] = [leaf("Name", ctx.bucket), leaf("Prefix", encode(prefix)), leaf("Marker", encode(marker)),
                              leaf("MaxKeys", max_keys), leaf("IsTruncated", page.truncated)]
    if delimiter:
        children.append(leaf("Delimiter", encode(delimiter)))
    if page.truncated and delimiter:
        children.append(leaf("NextMarker", encode(page.cursor)))
    if "encoding-type" in ctx.query:
        children.append(leaf("EncodingType", "url"))
    children += [_content(row, encode, _owner(ctx)) for row in page.objects]
    children += [element("CommonPrefixes", [leaf("Prefix", encode(p))]) for p in page.prefixes]
    return _xml("ListBucketResult", children)


async def list_objects_v2(ctx: S3Request) -> web.StreamResponse:
    await ctx.owned_bucket()
    encode = _encoder(ctx)
    prefix, delimiter = ctx.query.get("prefix", ""), ctx.query.get("delimiter", "")
    token, start_after = ctx.query.get("continuation-token"), ctx.query.get("start-after", "")
    after = decode_token(token) if token is not None else start_after
    max_keys = parse_max_keys(ctx.query.get("max-keys"))
    page = await asyncio.to_thread(list_objects, ctx.store.index, ctx.bucket, prefix, delimiter, after, max_keys)
    fetch_owner = ctx.query.get("fetch-owner") == "true"
    children: list[Element] = [leaf("Name", ctx.bucket), leaf("Prefix", encode(prefix)), leaf("MaxKeys", max_keys),
                              leaf("KeyCount", len(page.objects) + len(page.prefixes)),
                              leaf("IsTruncated", page.truncated)]
    if delimiter:
        children.append(leaf("Delimiter", encode(delimiter)))
    if token is not None:
        children.append(leaf("ContinuationToken", token))
    if start_after:
        children.append(leaf("StartAfter", encode(start_after)))
    if page.truncated:
        children.append(leaf("NextContinuationToken", encode_token(page.cursor)))
    if "encoding-type" in ctx.query:
        children.append(leaf("EncodingType", "url"))
    children += [_content(row, encode, _owner(ctx) if fetch_owner else None) for row in page.objects]
    children += [element("CommonPrefixes", [leaf("Prefix", encode(p))]) for p in page.prefixes]
    return _xml("ListBucketResult", children)


async def list_versions(ctx: S3Request) -> web.StreamResponse:
    await ctx.owned_bucket()
    encode = _encoder(ctx)
    prefix = ctx.query.get("prefix", "")
    key_marker = ctx.query.get("key-marker", "")
    version_marker = ctx.query.get("version-id-marker", "")
    max_keys = parse_max_keys(ctx.query.get("max-keys"))
    after_seq = None
    if key_marker and version_marker:
        marked = await ctx.store.index_get(ctx.bucket, key_marker, version_marker)
        if marked is None:
            raise invalid_argument("Invalid version id specified", "version-id-marker", version_marker)
        after_seq = marked.seq
    rows = await asyncio.to_thread(ctx.store.index.list_versions, ctx.bucket, key_marker, after_seq, prefix,
                                   max_keys + 1)
    truncated = len(rows) > max_keys
    rows = rows[:max_keys]
    children: list[Element] = [leaf("Name", ctx.bucket), leaf("Prefix", encode(prefix)),
                              leaf("KeyMarker", encode(key_marker)), leaf("VersionIdMarker", version_marker),
                              leaf("MaxKeys", max_keys), leaf("IsTruncated", truncated)]
    if truncated and rows:
        children += [leaf("NextKeyMarker", encode(rows[-1].key)), leaf("NextVersionIdMarker", rows[-1].version_id)]
    if "encoding-type" in ctx.query:
        children.append(leaf("EncodingType", "url"))
    for row in rows:
        common = [leaf("Key", encode(row.key)), leaf("VersionId", row.version_id), leaf("IsLatest", row.latest),
                  leaf("LastModified", iso8601(row.modified))]
        if row.delete_marker:
            children.append(element("DeleteMarker", [*common, _owner(ctx)]))
        else:
            children.append(element("Version", [*common, leaf("ETag", f'"{row.etag}"'), leaf("Size", row.size),
                                                leaf("StorageClass", "STANDARD"), _owner(ctx)]))
    return _xml("ListVersionsResult", children)


async def delete_objects(ctx: S3Request) -> web.StreamResponse:
    info = await ctx.owned_bucket()
    root = parse(await Body(ctx.request, ctx.auth).read_all(2 << 20))
    if root.tag != "Delete":
        raise malformed_xml()
    quiet = (child_text(root, "Quiet", "false") or "").strip().lower() == "true"
    targets = []
    for obj in root.findall("Object"):
        key = child_text(obj, "Key")
        if key is None:
            raise malformed_xml()
        targets.append((key, child_text(obj, "VersionId")))
    if not targets or len(targets) > MAX_DELETE:
        raise malformed_xml()
    results: list[Element] = []
    for key, version_id in targets:
        try:
            removed = await ctx.store.delete(ctx.bucket, key, version_id, info.versioning)
        except S3Error as err:
            results.append(element("Error", [leaf("Key", key), leaf("Code", err.code), leaf("Message", err.message)]))
            continue
        if quiet:
            continue
        children = [leaf("Key", key)]
        if version_id is not None:
            children.append(leaf("VersionId", version_id))
        if removed is not None and removed.delete_marker:
            children += [leaf("DeleteMarker", True), leaf("DeleteMarkerVersionId", removed.version_id)]
        results.append(element("Deleted", children))
    return _xml("DeleteResult", results)
