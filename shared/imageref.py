"""Docker image references: the grammar of distribution/reference, so a bad one is refused before it is stored.

    reference  := name [ ":" tag ] [ "@" digest ]
    name       := [ domain "/" ] path-component [ "/" path-component ]*
    domain     := host [ ":" port ]          host: domain-name | IPv4 | "[" IPv6 "]"
    path-comp  := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
    tag        := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
    digest     := algorithm ":" hex           (sha256: 64, sha384: 96, sha512: 128 lowercase hex digits)

As in Docker, the first component is a registry host only if it has a "." or a ":", is "localhost", or has an
upper-case letter (then it cannot be a repository path); the repository path itself must be lower case, and the
name (registry included) is at most 255 characters.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re

NAME_MAX_LENGTH = 255
TAG_MAX_LENGTH = 128
DIGEST_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}

_PATH_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_DOMAIN_COMPONENT = re.compile(r"^(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_PORT = re.compile(r"^[0-9]+$")


class ImageRefError(ValueError):
    """The reference breaks the grammar; the message names the part and the rule."""


@dataclasses.dataclass(frozen=True)
class ImageRef:
    domain: str | None
    path: str
    tag: str | None
    digest: str | None

    @property
    def name(self) -> str:
        return f"{self.domain}/{self.path}" if self.domain else self.path


def parse(reference: str) -> ImageRef:
    """Split and check ``reference``; raise ImageRefError naming the first problem found."""
    if not reference:
        raise ImageRefError("the image reference is empty")
    if any(c.isspace() or not c.isprintable() for c in reference):
        raise ImageRefError("the image reference contains whitespace or control characters")
    rest, digest = _split_digest(reference)
    name, tag = _split_tag(rest)
    if len(name) > NAME_MAX_LENGTH:
        raise ImageRefError(f"the repository name is {len(name)} characters long (at most {NAME_MAX_LENGTH})")
    domain, path = _split_domain(name)
    if domain is not None:
        _check_domain(domain)
    _check_path(path)
    return ImageRef(domain=domain, path=path, tag=tag, digest=digest)


def _split_digest(reference: str) -> tuple[str, str | None]:
    if "@" not in reference:
        return reference, None
    rest, digest = reference.split("@", 1)
    algorithm, sep, hex_part = digest.partition(":")
    if not sep:
        raise ImageRefError(f"digest {digest!r} must be written algorithm:hex, e.g. sha256:<64 hex digits>")
    length = DIGEST_HEX_LENGTHS.get(algorithm)
    if length is None:
        raise ImageRefError(f"digest algorithm {algorithm!r} is not supported (use one of "
                            f"{', '.join(DIGEST_HEX_LENGTHS)})")
    if len(hex_part) != length or any(c not in "0123456789abcdef" for c in hex_part):
        raise ImageRefError(f"a {algorithm} digest is {length} lower-case hex digits")
    if not rest:
        raise ImageRefError("a digest needs a repository name before the '@'")
    return rest, digest


def _split_tag(rest: str) -> tuple[str, str | None]:
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon <= slash:  # a ':' before the last '/' belongs to a registry port
        return rest, None
    name, tag = rest[:colon], rest[colon + 1:]
    if not tag:
        raise ImageRefError("the tag after ':' is empty")
    if len(tag) > TAG_MAX_LENGTH:
        raise ImageRefError(f"tag is {len(tag)} characters long (at most {TAG_MAX_LENGTH})")
    if not _TAG.match(tag):
        raise ImageRefError(f"tag {tag!r} may use only letters, digits, '_', '.' and '-', and may not start "
                            f"with '.' or '-'")
    if not name:
        raise ImageRefError("the repository name before the tag is empty")
    return name, tag


def _split_domain(name: str) -> tuple[str | None, str]:
    first, sep, remainder = name.partition("/")
    if not sep:
        return None, name
    is_domain = ("." in first or ":" in first or first == "localhost" or first.lower() != first
                 or first.startswith("["))
    return (first, remainder) if is_domain else (None, name)


def _check_domain(domain: str) -> None:
    host, port = domain, None
    if domain.startswith("["):
        end = domain.find("]")
        if end < 0:
            raise ImageRefError(f"registry {domain!r}: an IPv6 address needs a closing ']'")
        host, after = domain[1:end], domain[end + 1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ImageRefError(f"registry {domain!r}: {host!r} is not an IPv6 address") from None
        if after:
            if not after.startswith(":"):
                raise ImageRefError(f"registry {domain!r}: only ':port' may follow the IPv6 address")
            port = after[1:]
    else:
        if ":" in domain:
            host, port = domain.split(":", 1)
        if not host:
            raise ImageRefError(f"registry {domain!r}: the host name is empty")
        bad = [c for c in host.split(".") if not _DOMAIN_COMPONENT.match(c)]
        if bad:
            raise ImageRefError(f"registry {domain!r}: host part {bad[0]!r} may use only letters, digits and "
                                f"inner '-'")
    if port is not None and (not _PORT.match(port) or not 0 < int(port) < 65536):
        raise ImageRefError(f"registry {domain!r}: port {port!r} must be a number from 1 to 65535")


def _check_path(path: str) -> None:
    for component in path.split("/"):
        if not component:
            raise ImageRefError(f"repository {path!r} has an empty path component (a doubled or trailing '/')")
        if component.lower() != component and _PATH_COMPONENT.match(component.lower()):
            raise ImageRefError(f"repository name {path!r} must be lower case")
        if not _PATH_COMPONENT.match(component):
            raise ImageRefError(f"repository path component {component!r} may use only lower-case letters and "
                                f"digits, joined by single '.', '_', '__' or runs of '-'")
