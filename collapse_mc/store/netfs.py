"""Is a path on a network filesystem? SQLite's WAL journal (the store's) needs shared memory between its
writers, so it does not work when writers on several hosts share one file over NFS, Lustre, GPFS, ...: each
shard must then write its own store (``sweep run --shard I/N --db part-I.sqlite``), joined by ``store merge``.
"""
from __future__ import annotations

import os
import sys

NETWORK_FS = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "lustre", "gpfs", "beegfs", "fuse.sshfs", "ceph",
              "fuse.ceph", "glusterfs", "fuse.glusterfs", "9p", "afs", "panfs", "pvfs2", "orangefs", "wekafs")


def filesystem_type(path, mounts: str = "/proc/mounts") -> str | None:
    """The type of the filesystem holding ``path`` (or its nearest existing parent) from ``mounts``; None
    when unknown (no such file, e.g. not Linux)."""
    p = os.path.realpath(os.path.abspath(os.fspath(path)))
    best, kind = "", None
    try:
        with open(mounts) as f:
            for line in f:
                fields = line.split()
                if len(fields) < 3:
                    continue
                point = fields[1].replace("\\040", " ")
                inside = p == point or p.startswith(point.rstrip("/") + "/")
                if inside and len(point) >= len(best):
                    best, kind = point, fields[2]
    except OSError:
        return None
    return kind


def network_filesystem(path, mounts: str = "/proc/mounts") -> str | None:
    """The filesystem type when ``path`` lies on a network filesystem, else None."""
    kind = filesystem_type(path, mounts)
    return kind if kind is not None and kind.lower() in NETWORK_FS else None


def warn_shared_network_store(path, writers: str, mounts: str = "/proc/mounts", file=None) -> bool:
    """Print a one-line warning on stderr when several writers (``writers`` says who) are asked to share the
    store at ``path`` on a network filesystem; returns whether it warned."""
    kind = network_filesystem(path, mounts)
    if kind is None:
        return False
    print(f"collapse-mc: warning: {path} is on a network filesystem ({kind}) and {writers} may write to it: "
          "SQLite's WAL journal does not work across hosts; give each writer its own --db (e.g. "
          "part-I.sqlite) and join them with 'collapse-mc store merge'", file=file or sys.stderr)
    return True
