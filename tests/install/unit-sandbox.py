#!/usr/bin/python3
"""Runs a program under the shipped unit's system call filter, without systemd.

usage: unit-sandbox.py UNIT PROGRAM [ARG ...]
       unit-sandbox.py --check UNIT

Reads SystemCallFilter=, SystemCallErrorNumber= and SystemCallArchitectures=
from UNIT, expands the @groups with this host's `systemd-analyze
syscall-filter` (the sets systemd itself would use), loads the same allow
list with libseccomp (Debian's python3-seccomp), then execs PROGRAM: what
PROGRAM and its children call outside the list fails with that errno, as
under systemd.  The capability bounding set and no_new_privs are set by the
caller (setpriv).  --check proves the filter bites: swapoff(2), outside
@system-service, must fail with the unit's errno instead of ENOENT.
"""
import ctypes
import errno
import os
import re
import subprocess
import sys

import seccomp


def unit_settings(path):
    """The unit's filter words, errno name and architectures."""
    words, err, archs = [], None, None
    with open(path) as f:
        for line in f:
            m = re.match(r"^(SystemCallFilter|SystemCallErrorNumber|SystemCallArchitectures)=(.*)$",
                         line.strip())
            if not m:
                continue
            if m.group(1) == "SystemCallFilter":
                if m.group(2).startswith("~"):
                    sys.exit("unit-sandbox: deny lists (~) are not supported")
                words += m.group(2).split()
            elif m.group(1) == "SystemCallErrorNumber":
                err = m.group(2).strip()
            else:
                archs = m.group(2).strip()
    if not words:
        sys.exit("unit-sandbox: %s has no SystemCallFilter=" % path)
    if archs not in (None, "native"):
        sys.exit("unit-sandbox: SystemCallArchitectures=%s is not supported" % archs)
    return words, err


def groups():
    """{"@name": [members]} as this host's systemd defines them."""
    out = subprocess.run(["systemd-analyze", "syscall-filter"], check=True,
                         capture_output=True, text=True).stdout
    table, current = {}, None
    for line in out.splitlines():
        if line.startswith("@"):
            current = table.setdefault(line.strip(), [])
        elif line.startswith("    ") and current is not None:
            word = line.strip()
            if word and not word.startswith("#"):
                current.append(word)
        elif not line.strip():
            current = None
    return table


def expand(words, table, seen=None):
    seen = set() if seen is None else seen
    names = set()
    for w in words:
        if w.startswith("@"):
            if w in seen:
                continue
            seen.add(w)
            if w not in table:
                sys.exit("unit-sandbox: unknown group %s" % w)
            names |= expand(table[w], table, seen)
        else:
            names.add(w)
    return names


def load(unit):
    words, err = unit_settings(unit)
    code = getattr(errno, err) if err else None
    default = seccomp.ERRNO(code) if code is not None else seccomp.KILL_PROCESS
    f = seccomp.SyscallFilter(defaction=default)
    allowed = 0
    for name in sorted(expand(words, groups())):
        try:
            f.add_rule(seccomp.ALLOW, name)
            allowed += 1
        except (RuntimeError, ValueError, OSError):
            pass  # not a system call of this architecture
    f.load()
    return code, allowed


def main(argv):
    if len(argv) == 3 and argv[1] == "--check":
        code, allowed = load(argv[2])
        libc = ctypes.CDLL(None, use_errno=True)
        rc = libc.swapoff(b"/nonexistent-sn-sandbox-check")
        got = ctypes.get_errno()
        if rc != -1 or got != code:
            sys.exit("unit-sandbox: swapoff was not refused by the filter (errno %d)" % got)
        print("unit-sandbox: %d system calls allowed, swapoff refused with %s"
              % (allowed, errno.errorcode[code]))
        return 0
    if len(argv) < 3:
        sys.exit(__doc__)
    load(argv[1])
    os.execv(argv[2], argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
