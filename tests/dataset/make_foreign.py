#!/usr/bin/env python3
"""Write a robomimic-layout file the way other tools do (h5py, gzip, float32 obs, rewards
as (N,1), variable-length string masks, demo names out of numeric order, no demokit attrs).
Values follow formulas the C tests recompute:
  actions[t,j] = ((t*7 + j + 3*d) % 13)/13 - 0.5   (d = demo index)
  obs/eef[t,j]  = d + t/1000 + j/10   (float32)
  obs/joint[t,j] = -(d + t/100) * (j+1)   (float64, 4 cols)
  obs/img[t]    = uint8 (t + d) % 256 everywhere, shape (8,8,3)
  rewards[t,0]  = t / 10
Usage: make_foreign.py OUT [--fixed-masks]"""
import json
import sys

import h5py
import numpy as np

out = sys.argv[1]
fixed = "--fixed-masks" in sys.argv
lengths = {1: 5, 2: 9, 10: 4}
with h5py.File(out, "w") as f:
    data = f.create_group("data")
    data.attrs["env_args"] = json.dumps({"env_name": "Lift", "type": 1, "env_kwargs": {"robots": ["Panda"]}})
    data.attrs["total"] = sum(lengths.values())
    for d in [10, 2, 1]:
        n = lengths[d]
        g = data.create_group("demo_%d" % d)
        g.attrs["num_samples"] = n
        t = np.arange(n)[:, None]
        j = np.arange(7)[None, :]
        g.create_dataset("actions", data=((t * 7 + j + 3 * d) % 13) / 13.0 - 0.5, compression="gzip")
        g.create_dataset("rewards", data=(np.arange(n) / 10.0)[:, None])
        g.create_dataset("dones", data=(np.arange(n) == n - 1).astype(np.int64))
        g.create_dataset("states", data=np.zeros((n, 5)))
        for grp in ["obs", "next_obs"]:
            o = g.create_group(grp)
            jj = np.arange(3)[None, :]
            o.create_dataset("eef", data=(d + t / 1000.0 + jj / 10.0).astype(np.float32), compression="gzip", compression_opts=9)
            j4 = np.arange(4)[None, :]
            o.create_dataset("joint", data=-(d + t / 100.0) * (j4 + 1))
            img = np.zeros((n, 8, 8, 3), np.uint8)
            for k in range(n):
                img[k] = (k + d) % 256
            o.create_dataset("img", data=img, chunks=(1, 8, 8, 3), compression="gzip")
    if fixed:
        f["mask/train"] = np.array([b"demo_1", b"demo_10"], dtype="S7")
        f["mask/valid"] = np.array([b"demo_2"], dtype="S7")
    else:
        dt = h5py.string_dtype()
        f.create_dataset("mask/train", data=["demo_1", "demo_10"], dtype=dt)
        f.create_dataset("mask/valid", data=["demo_2"], dtype=dt)
