"""``thecloud-agent``: entry point reserved for the agent daemon, which is not built yet."""

from __future__ import annotations

import sys


def main() -> None:
    sys.stderr.write("thecloud-agent is not available in this version yet; see the project's open issues\n")
    sys.exit(2)
