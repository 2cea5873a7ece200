"""Applying an nftables ruleset netd owns, atomically and only when it differs.

A ruleset is one ``nft -f -`` transaction that deletes and redefines netd's own tables (never another
table): the kernel swaps old for new in one step, so no packet ever sees a half-built firewall, and
conntrack entries (established flows) survive. Each table carries the hash of the text that built it as
its comment, so a restarted netd recognises a ruleset that is already right and leaves it alone; while
running, the listing is compared too, which catches rules someone changed by hand (drift).
"""

from __future__ import annotations

import hashlib
import re

from netd.nsutil import run

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
        self._applied: str | None = None  # the transaction text we last applied (or adopted)
        self._listing: str | None = None  # what the kernel listed right after
        # False: trust a ruleset this process applied and skip the listing (netd's passes for a new document;
        # its periodic passes verify, which is what repairs rules changed by hand)
        self.verify = True

    def _list(self) -> str:
        """Our tables as the kernel lists them, from one ``nft list ruleset`` (one process per check, whatever
        the number of tables: spawning nft is most of a pass's fixed cost)."""
        blocks = _tables(run(["nft", "list", "ruleset"], netns=self.netns, check=False))
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
            if self._applied is None and tag is not None:
                found = _COMMENT.findall(listing)
                if len(found) == len(self.names) and set(found) == {tag.group(1)}:
                    self._applied, self._listing = text, listing  # a restarted netd adopts a ruleset that is right
                    return []
        run(["nft", "-f", "-"], netns=self.netns, stdin=text)
        self._applied, self._listing = text, self._list()
        return [f"applied nft {', '.join(self.names)}" + (f" in {self.netns}" if self.netns else "")]

    def remove(self) -> list[str]:
        changes = []
        for name in self.names:
            if run(["nft", "list", "table", *name.split()], netns=self.netns, check=False):
                run(["nft", "delete", "table", *name.split()], netns=self.netns, check=False)
                changes.append(f"deleted nft {name}")
        self._applied = self._listing = None
        return changes


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
