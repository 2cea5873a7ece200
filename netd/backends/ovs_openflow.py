"""Flow changes sent straight to a bridge's OpenFlow socket (OpenFlow 1.4, one atomic bundle), no process.

``ovs_flows`` writes flows in ``ovs-ofctl`` syntax and runs ``ovs-ofctl`` for them. Starting that process
costs more than the change itself on a busy host (tens of milliseconds of fork/exec and connection setup,
while ovs-vswitchd is busy plugging the same port), so the changes of a new or removed port (the flooding
flows, remote MACs, tunnel ports' flows) go out from here: this encodes the subset of the syntax those
flows use (matches ``in_port``, ``reg0``, ``dl_dst``; actions ``output``, ``drop``, ``resubmit(,T)``,
``load:N->NXM_NX_REG0[]``) and answers None for anything else (the ``learn`` flow), which stays with
``ovs-ofctl``. The bundle is atomic and ordered, like ``ovs-ofctl --bundle``.

``send`` writes everything at once and returns; ``Pending.finish`` reads the answers (the caller makes
devices meanwhile). An error from the switch, or a switch that does not speak OpenFlow 1.4, raises
``OpenFlowError``: the caller falls back to ``ovs-ofctl``, which applies the same (idempotent) lines.
"""

from __future__ import annotations

import os
import re
import select
import socket
import struct
import time

OFP_VERSION = 0x05  # OpenFlow 1.4: bundles are part of the protocol
OFPT_HELLO, OFPT_ERROR, OFPT_FLOW_MOD, OFPT_BUNDLE_CONTROL, OFPT_BUNDLE_ADD = 0, 1, 14, 33, 34
OFPBCT_OPEN_REQUEST, OFPBCT_COMMIT_REQUEST, OFPBCT_COMMIT_REPLY = 0, 4, 5
OFPBF_ATOMIC, OFPBF_ORDERED = 1, 2
OFPFC_ADD, OFPFC_DELETE_STRICT = 0, 4
OFPIT_APPLY_ACTIONS = 4
OFPAT_OUTPUT, OFPAT_SET_FIELD, OFPAT_EXPERIMENTER = 0, 25, 0xFFFF
NX_VENDOR_ID, NXAST_RESUBMIT_TABLE = 0x00002320, 14
OFPP_IN_PORT, OFPP_ANY, OFPG_ANY, OFPCML_NO_BUFFER, NO_BUFFER = 0xFFFFFFF8, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFF, 0xFFFFFFFF
_OXM_IN_PORT = (0x8000, 0, 4)  # OXM class, field, length
_OXM_ETH_DST = (0x8000, 3, 6)
_NXM_REG0 = (0x0001, 0, 4)
_HEADER = struct.Struct("!BBHI")
_ACTION = re.compile(r"output:(\d+)|drop|resubmit\(,(\d+)\)|load:(\d+)->NXM_NX_REG0\[\]")
_FIELD = re.compile(r"(cookie|table|priority|in_port|reg0|dl_dst)=([^,]+)")


class OpenFlowError(Exception):
    """The switch refused the change or could not be reached; ``ovs-ofctl`` gets the same lines."""


def _pad8(raw: bytes) -> bytes:
    return raw + b"\0" * (-len(raw) % 8)


def _oxm(field: tuple[int, int, int], value: bytes) -> bytes:
    oxm_class, number, length = field
    return struct.pack("!HBB", oxm_class, number << 1, length) + value


def _match(fields: dict[str, str]) -> bytes:
    oxms = b""
    if "in_port" in fields:
        oxms += _oxm(_OXM_IN_PORT, struct.pack("!I", int(fields["in_port"])))
    if "dl_dst" in fields:
        oxms += _oxm(_OXM_ETH_DST, bytes.fromhex(fields["dl_dst"].replace(":", "")))
    if "reg0" in fields:
        oxms += _oxm(_NXM_REG0, struct.pack("!I", int(fields["reg0"], 0)))
    return _pad8(struct.pack("!HH", 1, 4 + len(oxms)) + oxms)  # OFPMT_OXM


def _actions(text: str) -> bytes | None:
    encoded = b""
    position = 0
    for found in _ACTION.finditer(text):
        if found.start() != position or (found.end() < len(text) and text[found.end()] != ","):
            return None
        position = found.end() + 1
        output, table, load = found.groups()
        if output is not None:
            encoded += struct.pack("!HHIH6x", OFPAT_OUTPUT, 16, int(output), OFPCML_NO_BUFFER)
        elif table is not None:
            encoded += struct.pack("!HHIHHB3x", OFPAT_EXPERIMENTER, 16, NX_VENDOR_ID, NXAST_RESUBMIT_TABLE,
                                   OFPP_IN_PORT & 0xFFFF, int(table))
        elif load is not None:
            field = _pad8(struct.pack("!HH", OFPAT_SET_FIELD, 0) + _oxm(_NXM_REG0, struct.pack("!I", int(load))))
            encoded += field[:2] + struct.pack("!H", len(field)) + field[4:]
    if position < len(text):
        return None
    return encoded


def flow_mod(line: str, xid: int) -> bytes | None:
    """The OpenFlow 1.4 FLOW_MOD for one ``ovs-ofctl add-flows`` line (``add FLOW`` or ``delete_strict
    MATCH``) of the subset above, or None."""
    try:
        return _flow_mod(line, xid)
    except (ValueError, struct.error):  # a number out of range: ovs-ofctl says what is wrong with it
        return None


def _flow_mod(line: str, xid: int) -> bytes | None:
    command, _, flow = line.partition(" ")
    spec, _, actions = flow.partition(",actions=")
    pairs = _FIELD.findall(spec)
    if ",".join(f"{k}={v}" for k, v in pairs) != spec or len(dict(pairs)) != len(pairs):
        return None
    fields = dict(pairs)
    cookie_text, _, mask_text = fields.get("cookie", "0").partition("/")
    cookie = int(cookie_text, 0)
    if command == "add" and actions and not mask_text:
        mod, cookie_mask, instructions = OFPFC_ADD, 0, _actions(actions)
        if instructions is None:
            return None
        if instructions:
            instructions = struct.pack("!HH4x", OFPIT_APPLY_ACTIONS, 8 + len(instructions)) + instructions
    elif command == "delete_strict" and not actions and mask_text == "-1":
        mod, cookie_mask, instructions = OFPFC_DELETE_STRICT, 0xFFFFFFFFFFFFFFFF, b""
    else:
        return None
    body = struct.pack("!QQBBHHHIIIHH", cookie, cookie_mask, int(fields.get("table", "0")), mod, 0, 0,
                       int(fields.get("priority", "32768")), NO_BUFFER, OFPP_ANY, OFPG_ANY, 0, 0)
    body += _match(fields) + instructions
    return _HEADER.pack(OFP_VERSION, OFPT_FLOW_MOD, _HEADER.size + len(body), xid) + body


def _bundle_control(xid: int, bundle: int, kind: int) -> bytes:
    body = struct.pack("!IHH", bundle, kind, OFPBF_ATOMIC | OFPBF_ORDERED)
    return _HEADER.pack(OFP_VERSION, OFPT_BUNDLE_CONTROL, _HEADER.size + len(body), xid) + body


def encode(lines: list[str]) -> list[bytes] | None:
    """FLOW_MODs for every line (xids 1...), or None if any line is outside the subset."""
    mods = [flow_mod(line, n + 1) for n, line in enumerate(lines)]
    return None if any(mod is None for mod in mods) else [mod for mod in mods if mod is not None]


class Pending:
    """A bundle written to the switch; ``finish`` waits for its commit reply."""

    def __init__(self, sock: socket.socket, target: str, commit_xid: int) -> None:
        self.sock, self.target, self.commit_xid = sock, target, commit_xid

    def finish(self, timeout: float) -> None:
        try:
            self._wait(time.monotonic() + timeout)
        finally:
            self.sock.close()

    def _wait(self, deadline: float) -> None:
        buffer = b""
        while True:
            while len(buffer) >= _HEADER.size:
                version, kind, length, xid = _HEADER.unpack_from(buffer)
                if length < _HEADER.size:
                    raise OpenFlowError(f"{self.target}: malformed OpenFlow message")
                if len(buffer) < length:
                    break
                message, buffer = buffer[:length], buffer[length:]
                if kind == OFPT_HELLO and version < OFP_VERSION:
                    raise OpenFlowError(f"{self.target} speaks OpenFlow up to version {version:#x} only")
                if kind == OFPT_ERROR:
                    error_type, code = struct.unpack_from("!HH", message, _HEADER.size)
                    raise OpenFlowError(f"{self.target}: error type {error_type} code {code} (xid {xid})")
                if kind == OFPT_BUNDLE_CONTROL and xid == self.commit_xid:
                    if struct.unpack_from("!IH", message, _HEADER.size)[1] == OFPBCT_COMMIT_REPLY:
                        return
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.sock], [], [], left)[0]:
                raise OpenFlowError(f"{self.target}: no answer to the flow change")
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise OpenFlowError(f"{self.target} closed the connection")
            buffer += chunk


def send(target: str, mods: list[bytes]) -> Pending:
    """Connects to ``target`` (``unix:<bridge>.mgmt``), says hello and writes ``mods`` (from ``encode``) as
    one atomic, ordered bundle, without waiting for any answer."""
    if not target.startswith("unix:"):
        raise OpenFlowError(f"{target}: only unix sockets are spoken to directly")
    bundle = int.from_bytes(os.urandom(4), "big")
    xid = len(mods) + 1
    adds = []
    for mod in mods:
        mod_xid = _HEADER.unpack_from(mod)[3]
        body = struct.pack("!IHH", bundle, 0, OFPBF_ATOMIC | OFPBF_ORDERED) + mod
        adds.append(_HEADER.pack(OFP_VERSION, OFPT_BUNDLE_ADD, _HEADER.size + len(body), mod_xid) + body)
    hello = _HEADER.pack(OFP_VERSION, OFPT_HELLO, _HEADER.size, 0)
    blob = b"".join([hello, _bundle_control(xid, bundle, OFPBCT_OPEN_REQUEST), *adds,
                     _bundle_control(xid + 1, bundle, OFPBCT_COMMIT_REQUEST)])
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(target[len("unix:"):])
        sock.sendall(blob)
    except OSError as exc:
        sock.close()
        raise OpenFlowError(f"{target}: {exc}") from exc
    return Pending(sock, target, xid + 1)
