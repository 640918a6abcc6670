#!/usr/bin/python3
"""make_stored.py OUTDIR -- robomimic-layout files whose data is stored in ways the reader must not
read as plain bytes of the main file: datasets and groups behind external links (and a soft link
through one), float types other than the native ones, numpy bools, and one big gzip chunk.
Values follow formulas the C tests (tests/dataset/test_reader.c) recompute:
  actions[t,j]   = ((t*7 + j + 3*d) % 13)/13 - 0.5            (d = demo index, 7 columns)
  obs/eef[t,j]   = d + t/64 + j/4                              (3 columns; exact in float16)
  obs/joint[t,j] = -(d + t/100) * (j+1)                        (4 columns)
  dones[t]       = t == n-1
  big: obs/wide[t,j] = ((t*31 + j*7) % 101)/101 (float64), obs/wide32 the same as float32
Files:
  linked.h5 (+ linked_target.h5): demo_0/actions is an external link, demo_1/obs an external link
    to a group, demo_2/actions a soft link to /elsewhere/actions where /elsewhere is an external
    link to a group; the main file's own bytes at those offsets are other numbers (decoy).
  linked_nan.h5 (+ linked_nan_target.h5): the same, with NaN at demo_0/actions step 3 element 2
    in the linked file only.
  types.h5: demo_0 actions big-endian float64, demo_1 float16, demo_2 a 32-bit float with another
    exponent bias (not IEEE); obs/eef float16, obs/joint big-endian float64; dones numpy bool
    (an HDF5 enum of int8, as h5py writes it).
  bool_values.h5: like types.h5 but dones of demo_1 holds the raw enum value 2 at step 4.
  big.h5: one demo of 3000 steps, obs/wide (3000, 400) float64 and obs/wide32 float32, each one
    gzip chunk.  big_nan.h5: the same with NaN at obs/wide step 2500 element 123.
Deterministic. Run with Debian's /usr/bin/python3 (h5py + numpy)."""
import json
import os
import sys

import h5py
import numpy as np

LENGTHS = {0: 6, 1: 9, 2: 5}
ENV_ARGS = json.dumps({"env_name": "Lift", "type": 1, "env_kwargs": {}})


def actions(d, n):
    t = np.arange(n)[:, None]
    j = np.arange(7)[None, :]
    return ((t * 7 + j + 3 * d) % 13) / 13.0 - 0.5


def eef(d, n):
    return d + np.arange(n)[:, None] / 64.0 + np.arange(3)[None, :] / 4.0


def joint(d, n):
    return -(d + np.arange(n)[:, None] / 100.0) * (np.arange(4)[None, :] + 1)


def dones(n):
    return (np.arange(n) == n - 1)


def start(path):
    f = h5py.File(path, "w")
    data = f.create_group("data")
    data.attrs["env_args"] = ENV_ARGS
    data.attrs["total"] = sum(LENGTHS.values())
    return f, data


def obs_groups(g, d, n, store=None):
    for go in ("obs", "next_obs"):
        o = g.create_group(go)
        sh = 1 if go == "next_obs" else 0
        (store or (lambda grp, name, a: grp.create_dataset(name, data=a)))(o, "eef", eef(d, n + 1)[sh:sh + n])
        (store or (lambda grp, name, a: grp.create_dataset(name, data=a)))(o, "joint", joint(d, n + 1)[sh:sh + n])


def linked(out, stem, nan):
    target = stem + "_target.h5"
    with h5py.File(os.path.join(out, target), "w") as t:
        # pad first, so the linked data sits at offsets where the main file has other numbers
        t.create_dataset("pad", data=np.full(4096, 7.0))
        a0 = actions(0, LENGTHS[0])
        if nan:
            a0[3, 2] = np.nan
        t.create_dataset("a0", data=a0)
        g1 = t.create_group("obs1")
        g1.create_dataset("eef", data=eef(1, LENGTHS[1] + 1)[:LENGTHS[1]])
        g1.create_dataset("joint", data=joint(1, LENGTHS[1] + 1)[:LENGTHS[1]])
        g2 = t.create_group("grp")
        g2.create_dataset("actions", data=actions(2, LENGTHS[2]))
    f, data = start(os.path.join(out, stem + ".h5"))
    with f:
        f.create_dataset("decoy", data=np.full(65536, 123.0))  # what the main file has at those offsets
        for d, n in LENGTHS.items():
            g = data.create_group("demo_%d" % d)
            g.attrs["num_samples"] = n
            g.create_dataset("rewards", data=np.zeros(n))
            g.create_dataset("dones", data=dones(n).astype(np.uint8))
            obs_groups(g, d, n)
            if d == 0:
                g["actions"] = h5py.ExternalLink(target, "/a0")
            else:
                g.create_dataset("actions", data=actions(d, n))
        del data["demo_1/obs"]
        data["demo_1/obs"] = h5py.ExternalLink(target, "/obs1")
        f["elsewhere"] = h5py.ExternalLink(target, "/grp")
        del data["demo_2/actions"]
        data["demo_2/actions"] = h5py.SoftLink("/elsewhere/actions")


def custom_float(dsgroup, name, values):
    """A 32-bit little-endian float with exponent bias 100 (IEEE float32 has 127): not the native type."""
    ct = h5py.h5t.IEEE_F32LE.copy()
    ct.set_ebias(100)
    space = h5py.h5s.create_simple(values.shape)
    dsid = h5py.h5d.create(dsgroup.id, name.encode(), ct, space)
    dsid.write(h5py.h5s.ALL, h5py.h5s.ALL, np.ascontiguousarray(values, dtype=np.float64))


def types(out, name, bad_bool):
    f, data = start(os.path.join(out, name))
    with f:
        for d, n in LENGTHS.items():
            g = data.create_group("demo_%d" % d)
            g.attrs["num_samples"] = n
            a = actions(d, n)
            if d == 0:
                g.create_dataset("actions", data=a.astype(">f8"))
            elif d == 1:
                g.create_dataset("actions", data=a.astype(np.float16))
            else:
                custom_float(g, "actions", a)
            g.create_dataset("rewards", data=np.zeros(n))
            g.create_dataset("dones", data=dones(n))  # numpy bool: an HDF5 enum of int8
            if bad_bool and d == 1:
                raw = g["dones"].id
                v = dones(n).astype(np.int8)
                v[4] = 2
                raw.write(h5py.h5s.ALL, h5py.h5s.ALL, v, mtype=h5py.h5t.NATIVE_INT8)

            def store(grp, key, arr):
                grp.create_dataset(key, data=arr.astype(np.float16 if key == "eef" else ">f8"))
            obs_groups(g, d, n, store)


def big(out, name, nan):
    n = 3000
    f, data = start(os.path.join(out, name))
    with f:
        data.attrs["total"] = n
        g = data.create_group("demo_0")
        g.attrs["num_samples"] = n
        g.create_dataset("actions", data=actions(0, n), chunks=(n, 7), compression="gzip")
        g.create_dataset("dones", data=dones(n).astype(np.uint8))
        o = g.create_group("obs")
        w = ((np.arange(n)[:, None] * 31 + np.arange(400)[None, :] * 7) % 101) / 101.0
        w32 = w.astype(np.float32)
        if nan:
            w[2500, 123] = np.nan
        o.create_dataset("wide", data=w, chunks=w.shape, compression="gzip")
        o.create_dataset("wide32", data=w32, chunks=w32.shape, compression="gzip")


def main(argv):
    if len(argv) != 1:
        print("usage: make_stored.py OUTDIR", file=sys.stderr)
        return 2
    out = argv[0]
    os.makedirs(out, exist_ok=True)
    linked(out, "linked", False)
    linked(out, "linked_nan", True)
    types(out, "types.h5", False)
    types(out, "bool_values.h5", True)
    big(out, "big.h5", False)
    big(out, "big_nan.h5", True)
    print("make_stored: wrote files in %s" % out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
