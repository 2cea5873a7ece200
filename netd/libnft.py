"""nftables commands run in this process through libnftables (ctypes), not by spawning ``nft``.

Starting the ``nft`` binary (plus ``nsenter`` for another namespace) costs 20-30 ms on a small host, most of
a firewall change; the same transaction through libnftables, which ``nft`` itself is a thin shell around,
takes a third of that. A context's netlink socket belongs to the network namespace the thread was in when
the context was made, so there is one context per namespace and it must be closed with its namespace.
Where the library cannot be loaded, the ``nft`` binary is used instead (same commands, same results).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading

from netd.nsutil import CommandError, entered, run

log = logging.getLogger("thecloud.netd.libnft")
_lib: ctypes.CDLL | None = None
_loaded = False
_load_lock = threading.Lock()


def _library() -> ctypes.CDLL | None:
    """libnftables with the signatures used here, or None when it is not installed."""
    global _lib, _loaded
    with _load_lock:
        if not _loaded:
            _loaded = True
            name = ctypes.util.find_library("nftables") or "libnftables.so.1"
            try:
                lib = ctypes.CDLL(name)
            except OSError as exc:
                log.info("libnftables not loadable, using the nft binary", extra={"error": str(exc)})
                return None
            lib.nft_ctx_new.restype = ctypes.c_void_p
            lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
            lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
            for call in (lib.nft_ctx_buffer_output, lib.nft_ctx_buffer_error):
                call.argtypes = [ctypes.c_void_p]
            lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
            for call in (lib.nft_ctx_get_output_buffer, lib.nft_ctx_get_error_buffer):
                call.argtypes = [ctypes.c_void_p]
                call.restype = ctypes.c_char_p
            _lib = lib
        return _lib


class Nft:
    """Runs nft command text in one network namespace (``netns``: a namespace file; None: the namespace of
    the thread that first uses it). Use it from one thread at a time."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        self._ctx: int | None = None

    def _context(self) -> int | None:
        lib = _library()
        if lib is None:
            return None
        if self._ctx is None:
            with entered(self.netns):
                ctx = lib.nft_ctx_new(0)
            if not ctx:
                raise CommandError("nft: cannot make a libnftables context")
            lib.nft_ctx_buffer_output(ctx)
            lib.nft_ctx_buffer_error(ctx)
            self._ctx = ctx
        return self._ctx

    def run(self, commands: str, check: bool = True) -> str:
        """Runs ``commands`` (what ``nft -f -`` reads) as one transaction; returns what nft prints."""
        ctx = self._context()
        if ctx is None:
            return run(["nft", "-f", "-"], netns=self.netns, stdin=commands, check=check)
        lib = _library()
        assert lib is not None
        failed = lib.nft_run_cmd_from_buffer(ctx, commands.encode())
        output = (lib.nft_ctx_get_output_buffer(ctx) or b"").decode(errors="replace")
        error = (lib.nft_ctx_get_error_buffer(ctx) or b"").decode(errors="replace")
        if failed and check:
            first = commands.strip().splitlines()[0][:60] if commands.strip() else ""
            raise CommandError(f"nft {first} failed ({failed}): {error.strip()[:500]}")
        return "" if failed else output

    def close(self) -> None:
        """Frees the context (and its netlink socket, which would keep a deleted namespace alive)."""
        lib = _library()
        if self._ctx is not None and lib is not None:
            lib.nft_ctx_free(self._ctx)
        self._ctx = None
