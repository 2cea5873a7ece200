"""The SSL context for a client's ``verify`` setting: True (system CAs), False (no checks) or a CA bundle path."""

from __future__ import annotations

import ssl


def ssl_context(verify: bool | str) -> ssl.SSLContext:
    if verify is False:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    return ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)
