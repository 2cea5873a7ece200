"""Which S3 operation a path-style request is: method, bucket/key and sub-resource query parameters."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from multidict import MultiMapping

from storaged.s3 import bucket_ops, multipart, object_ops
from storaged.s3.context import S3Request
from storaged.s3.errors import S3Error, not_implemented

Handler = Callable[[S3Request], Awaitable[web.StreamResponse]]

# Sub-resources this server does not implement: asking for them is a clear 501, never a silent listing.
UNSUPPORTED = {"acl", "policy", "policyStatus", "cors", "lifecycle", "tagging", "website", "logging",
               "notification", "replication", "encryption", "object-lock", "retention", "legal-hold", "torrent",
               "accelerate", "requestPayment", "analytics", "inventory", "metrics", "intelligent-tiering",
               "ownershipControls", "publicAccessBlock", "restore", "select", "attributes"}


def _method_not_allowed() -> S3Error:
    return S3Error("MethodNotAllowed", "The specified method is not allowed against this resource.", 405)


def _unsupported(query: MultiMapping[str]) -> None:
    for name in query:
        if name in UNSUPPORTED:
            raise not_implemented(f"the ?{name} sub-resource")


def route(method: str, bucket: str, key: str, query: MultiMapping[str],
          headers: web.Request) -> tuple[str, Handler]:
    """(operation name, handler) for a request; S3Error for what has no handler."""
    if not bucket:
        if method == "GET":
            return "ListBuckets", bucket_ops.list_buckets
        raise _method_not_allowed()
    _unsupported(query)
    if not key:
        return _bucket_route(method, query)
    return _object_route(method, query, "x-amz-copy-source" in headers.headers)


def _bucket_route(method: str, query: MultiMapping[str]) -> tuple[str, Handler]:
    if method == "PUT":
        if "versioning" in query:
            return "PutBucketVersioning", bucket_ops.put_versioning
        return "CreateBucket", bucket_ops.create_bucket
    if method == "HEAD":
        return "HeadBucket", bucket_ops.head_bucket
    if method == "GET":
        for name, op, handler in (("versioning", "GetBucketVersioning", bucket_ops.get_versioning),
                                  ("location", "GetBucketLocation", bucket_ops.get_location),
                                  ("uploads", "ListMultipartUploads", multipart.list_uploads),
                                  ("versions", "ListObjectVersions", bucket_ops.list_versions)):
            if name in query:
                return op, handler
        if query.get("list-type") == "2":
            return "ListObjectsV2", bucket_ops.list_objects_v2
        return "ListObjects", bucket_ops.list_objects_v1
    if method == "DELETE":
        return "DeleteBucket", bucket_ops.delete_bucket
    if method == "POST" and "delete" in query:
        return "DeleteObjects", bucket_ops.delete_objects
    raise _method_not_allowed()


def _object_route(method: str, query: MultiMapping[str], copy: bool) -> tuple[str, Handler]:
    if method == "PUT":
        if "uploadId" in query or "partNumber" in query:
            return "UploadPart", multipart.upload_part
        if copy:
            return "CopyObject", object_ops.copy_object
        return "PutObject", object_ops.put_object
    if method == "GET":
        if "uploadId" in query:
            return "ListParts", multipart.list_parts
        return "GetObject", object_ops.get_object
    if method == "HEAD":
        return "HeadObject", object_ops.head_object
    if method == "DELETE":
        if "uploadId" in query:
            return "AbortMultipartUpload", multipart.abort_upload
        return "DeleteObject", object_ops.delete_object
    if method == "POST":
        if "uploads" in query:
            return "CreateMultipartUpload", multipart.create_upload
        if "uploadId" in query:
            return "CompleteMultipartUpload", multipart.complete_upload
    raise _method_not_allowed()
