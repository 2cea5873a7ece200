"""Reading and writing a block volume's bytes whatever its format (raw file/device directly, qcow2 via qemu-io)."""

from __future__ import annotations

import re
import subprocess

from storaged.backends.base import VolumeInfo

_HEX_LINE = re.compile(r"^[0-9a-f]{8}:\s+((?:[0-9a-f]{2} )*[0-9a-f]{2})")


def write_pattern(info: VolumeInfo, offset: int, byte: int, length: int = 65536) -> None:
    if info.format == "qcow2":
        subprocess.run(["qemu-io", "-f", "qcow2", "-c", f"write -P {byte} {offset} {length}", info.path],
                       check=True, capture_output=True)
        return
    with open(info.path, "r+b") as fh:
        fh.seek(offset)
        fh.write(bytes([byte]) * length)
        fh.flush()


def read_bytes(info: VolumeInfo, offset: int, length: int = 65536) -> bytes:
    if info.format == "qcow2":
        out = subprocess.run(["qemu-io", "-f", "qcow2", "-c", f"read -v {offset} {length}", info.path],
                             check=True, capture_output=True, text=True).stdout
        data = bytearray()
        for line in out.splitlines():
            match = _HEX_LINE.match(line)
            if match:
                data += bytes.fromhex(match.group(1))
        return bytes(data[:length])
    with open(info.path, "rb") as fh:
        fh.seek(offset)
        return fh.read(length)
