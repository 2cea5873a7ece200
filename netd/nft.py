"""Applying an nftables ruleset netd owns, atomically and only when it differs.

A ruleset is one ``nft -f -`` transaction that deletes and redefines netd's own tables (never another
table): the kernel swaps old for new in one step, so no packet ever sees a half-built firewall, and
conntrack entries (established flows) survive. Each table carries the hash of the text that built it as
its comment, so a restarted netd recognises a ruleset that is already right and leaves it alone; while
running, the listing is compared too, which catches rules someone changed by hand (drift). Commands go
through libnftables in this process (``netd.libnft``).

A ruleset applied by a trusting pass (``verify=False``) is not read back at once: the next verifying pass
lists it, adopts it when its tables carry this ruleset's tag (as a restarted netd would) and re-applies it
otherwise, and from then on compares whole listings again.
"""

from __future__ import annotations

import hashlib
import re

from netd.libnft import Nft

_COMMENT = re.compile(r'comment "tc:([0-9a-f]+)"')


def digest(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def build(tables: list[tuple[str, str]]) -> str:
    """The transaction for ``[(\"inet thecloud\", body), ...]``; each body is the inside of a table block."""
    tag = digest("\n".join(f"{name}\n{body}" for name, body in tables))
    out = []
    for name, body in tables:
        out.append(f"table {name}\ndelete table {name}\ntable {name} {{\n  comment \"tc:{tag}\"\n{body}}}\n")
    return "".join(out)


class OwnedRuleset:
    """The nft tables netd owns in one namespace (the host's, or a router's)."""

    def __init__(self, names: list[str], netns: str | None = None) -> None:
        self.names = names
        self.netns = netns
        self._nft = Nft(netns)
        self._applied: str | None = None  # the transaction text we last applied (or adopted)
        self._listing: str | None = None  # what the kernel listed right after (None: not read back yet)
        # False: trust a ruleset this process applied and skip the listing (netd's passes for a new document;
        # its periodic passes verify, which is what repairs rules changed by hand)
        self.verify = True

    def _list(self) -> str:
        """Our tables as the kernel lists them, from one ``list ruleset`` (one command per check, whatever the
        number of tables)."""
        blocks = _tables(self._nft.run("list ruleset", check=False))
        return "".join(blocks.get(name, "") for name in self.names)

    def ensure(self, tables: list[tuple[str, str]]) -> list[str]:
        text = build(tables)
        tag = _COMMENT.search(text)
        if self._applied == text and not self.verify:
            return []
        if self._applied is None or self._applied == text:  # a ruleset about to be replaced needs no look
            listing = self._list()
            if self._applied == text and listing == self._listing:
                return []
            if (self._applied is None or self._listing is None) and tag is not None:
                found = _COMMENT.findall(listing)
                if len(found) == len(self.names) and set(found) == {tag.group(1)}:
                    # a restarted netd adopts a ruleset that is right; so does the first look after a trusting apply
                    self._applied, self._listing = text, listing
                    return []
        self._nft.run(text)
        self._applied, self._listing = text, (self._list() if self.verify else None)
        return [f"applied nft {', '.join(self.names)}" + (f" in {self.netns}" if self.netns else "")]

    def remove(self) -> list[str]:
        changes = []
        for name in self.names:
            if self._nft.run(f"list table {name}", check=False):
                self._nft.run(f"delete table {name}", check=False)
                changes.append(f"deleted nft {name}")
        self._applied = self._listing = None
        return changes

    def close(self) -> None:
        """Releases the nftables context (the tables stay)."""
        self._nft.close()


def _tables(listing: str) -> dict[str, str]:
    """``{"inet thecloud": "table inet thecloud {...}\\n", ...}`` from a ruleset listing (tables start at
    column 0 and end with a "}" line at column 0)."""
    blocks: dict[str, str] = {}
    name: str | None = None
    lines: list[str] = []
    for line in listing.splitlines(keepends=True):
        if name is None:
            if line.startswith("table ") and line.rstrip().endswith("{"):
                name, lines = " ".join(line.split()[1:3]), [line]
            continue
        lines.append(line)
        if line.rstrip() == "}":
            blocks[name] = "".join(lines)
            name = None
    return blocks
