"""``thecloud-storaged``: entry point reserved for the storaged daemon, which is not built yet."""

from __future__ import annotations

import sys


def main() -> None:
    sys.stderr.write("thecloud-storaged is not available in this version yet; see the project's open issues\n")
    sys.exit(2)
