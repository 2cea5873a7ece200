"""Docker image references (shared/imageref.py): the distribution/reference grammar, valid and invalid."""

from __future__ import annotations

import pytest

from shared import imageref

SHA = "a" * 64


@pytest.mark.parametrize(("ref", "domain", "path", "tag", "digest"), [
    ("alpine", None, "alpine", None, None),
    ("alpine:3.19", None, "alpine", "3.19", None),
    ("library/alpine:latest", None, "library/alpine", "latest", None),
    ("local/busybox", None, "local/busybox", None, None),
    ("my_org/my-app__x/a.b", None, "my_org/my-app__x/a.b", None, None),
    ("a---b/c", None, "a---b/c", None, None),
    ("localhost/app", "localhost", "app", None, None),
    ("localhost:5000/app:v1", "localhost:5000", "app", "v1", None),
    ("registry.example.com/team/app:1.0-rc_1", "registry.example.com", "team/app", "1.0-rc_1", None),
    ("Registry/app", "Registry", "app", None, None),  # an upper-case first component can only be a host
    ("10.1.2.3:5000/app", "10.1.2.3:5000", "app", None, None),
    ("[::1]:5000/app:x", "[::1]:5000", "app", "x", None),
    (f"alpine@sha256:{SHA}", None, "alpine", None, f"sha256:{SHA}"),
    (f"ghcr.io/o/app:1@sha256:{SHA}", "ghcr.io", "o/app", "1", f"sha256:{SHA}"),
    (f"app@sha512:{'0' * 128}", None, "app", None, f"sha512:{'0' * 128}"),
    ("app:_private", None, "app", "_private", None),
])
def test_valid_references(ref: str, domain: str | None, path: str | None, tag: str | None,
                          digest: str | None) -> None:
    parsed = imageref.parse(ref)
    assert (parsed.domain, parsed.path, parsed.tag, parsed.digest) == (domain, path, tag, digest)
    assert parsed.name == (f"{domain}/{path}" if domain else path)


@pytest.mark.parametrize(("ref", "problem"), [
    ("", "empty"),
    ("no spaces", "whitespace"),
    ("tab\there", "whitespace"),
    ("Alpine", "must be lower case"),
    ("library/Alpine", "must be lower case"),
    ("registry.io/Team/app", "must be lower case"),
    ("-alpine", "path component '-alpine'"),
    ("_alpine", "path component '_alpine'"),
    ("alpine-", "path component 'alpine-'"),
    ("a..b", "path component 'a..b'"),
    ("a___b", "path component 'a___b'"),
    ("a/b!", "path component 'b!'"),
    ("team//app", "empty path component"),
    ("team/app/", "empty path component"),
    ("alpine:", "tag after ':' is empty"),
    ("alpine:-x", "tag '-x'"),
    ("alpine:.x", "tag '.x'"),
    ("alpine:a+b", "tag 'a+b'"),
    ("alpine:" + "t" * 129, "tag is 129 characters long (at most 128)"),
    (":tag", "repository name before the tag is empty"),
    ("a" * 256, "256 characters long (at most 255)"),
    ("registry.io/" + "a" * 244, "256 characters long (at most 255)"),
    ("alpine@sha256", "algorithm:hex"),
    ("alpine@md5:" + "a" * 32, "algorithm 'md5' is not supported"),
    ("alpine@sha256:" + "a" * 63, "64 lower-case hex digits"),
    ("alpine@sha256:" + "A" * 64, "64 lower-case hex digits"),
    ("alpine@sha256:" + "g" * 64, "64 lower-case hex digits"),
    (f"@sha256:{SHA}", "needs a repository name"),
    ("localhost:99999/app", "port '99999' must be a number from 1 to 65535"),
    ("localhost:0/app", "port '0'"),
    ("localhost:ab/app:1", "port 'ab'"),
    ("-bad.io/app", "host part '-bad'"),
    ("bad_.io/app", "host part 'bad_'"),
    ("a..io/app", "host part ''"),
    (":5000/app", "host name is empty"),
    ("[::1/app", "closing ']'"),
    ("[zz::1]:5000/app", "not an IPv6 address"),
    ("[::1]x/app", "only ':port'"),
])
def test_invalid_references_name_the_problem(ref: str, problem: str) -> None:
    with pytest.raises(imageref.ImageRefError) as exc:
        imageref.parse(ref)
    assert problem in str(exc.value)


def test_limits_are_inclusive() -> None:
    assert imageref.parse("a" * 255).path == "a" * 255
    assert imageref.parse("a:" + "t" * 128).tag == "t" * 128
