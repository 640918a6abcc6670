#!/usr/bin/python3
"""rollout_digest.py FILE.h5 -- one SHA-256 over every demo's actions, rewards, states and observations
(keys in name order), demos in index order: two recordings or two sets of rollouts are the same bit for
bit exactly when their digests are (timestamps and attributes are left out: they hold wall-clock time)."""
import hashlib
import sys

import h5py

h = hashlib.sha256()
with h5py.File(sys.argv[1], "r") as f:
    for n in sorted(f["data"].keys(), key=lambda n: int(n.split("_")[1])):
        g = f["data"][n]
        for k in ("actions", "rewards", "states"):
            h.update(g[k][()].tobytes())
        for k in sorted(g["obs"].keys()):
            h.update(g["obs"][k][()].tobytes())
print(h.hexdigest())
