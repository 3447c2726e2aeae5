"""What Linux says of this machine's CPU (/proc/cpuinfo): its vendor and model name."""
from __future__ import annotations

import functools


@functools.cache
def cpuinfo_field(key: str, cpuinfo: str = "/proc/cpuinfo") -> str:
    """The first value of `key` ("vendor_id", "model name"), or "" where the file has none or cannot be read."""
    try:
        with open(cpuinfo) as lines:
            for line in lines:
                name, _, value = line.partition(":")
                if name.strip() == key:
                    return value.strip()
    except OSError:
        pass
    return ""


def amd_cpu() -> bool:
    """An AMD CPU (False elsewhere, or where /proc/cpuinfo cannot be read)."""
    return cpuinfo_field("vendor_id") == "AuthenticAMD"
