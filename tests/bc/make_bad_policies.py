#!/usr/bin/env python3
"""make_bad_policies.py GOOD.h5 OUTDIR -- malformed copies of a valid policy file for the loader tests.

Each case copies GOOD.h5 to OUTDIR/<case>.h5 and breaks one thing with h5py (tests/bc/test_policy.c
loads every one and checks the error). GOOD.h5 must have at least 2 hidden layers, obs_dim >= 4 and
act_dim >= 2. Prints "made <n>" at the end.
"""
import json
import os
import shutil
import sys

import h5py
import numpy as np


def set_str(f, name, value):
    f.attrs[name] = value  # a Python str: variable-length UTF-8, as the C writer stores strings


def wrong_format(f):
    set_str(f, "format", "demokit.dataset")


def version_2(f):
    f.attrs["version"] = np.int64(2)


def version_string(f):
    set_str(f, "version", "1")


def missing_arch(f):
    del f.attrs["arch"]


def arch_garbage(f):
    set_str(f, "arch", "{\"format\": \"demokit.nn_arch\", hidden: [")


def arch_unknown_key(f):
    a = json.loads(f.attrs["arch"])
    a["hiden"] = [3]
    set_str(f, "arch", json.dumps(a))


def dims_sum(f):
    d = json.loads(f.attrs["obs_dims"])
    d[0] += 1
    set_str(f, "obs_dims", json.dumps(d))


def dims_huge(f):
    set_str(f, "obs_dims", "[1e300, 3, 4, 2]")


def keys_not_list(f):
    set_str(f, "obs_keys", "\"object\"")


def keys_dims_count(f):
    k = json.loads(f.attrs["obs_keys"])
    set_str(f, "obs_keys", json.dumps(k + ["extra_key"]))


def missing_task(f):
    del f.attrs["task"]


def control_hz_negative(f):
    f.attrs["control_hz"] = -20.0


def info_not_object(f):
    set_str(f, "info", "[1, 2]")


def missing_tensor(f):
    del f["weights/l1.bias"]


def wrong_shape(f):
    w = f["weights/l0.weight"][()]
    del f["weights/l0.weight"]
    f["weights"].create_dataset("l0.weight", data=w.T.copy())


def wrong_rank(f):
    b = f["weights/l0.bias"][()]
    del f["weights/l0.bias"]
    f["weights"].create_dataset("l0.bias", data=b.reshape(1, -1))


def int_tensor(f):
    b = f["weights/l1.bias"][()]
    del f["weights/l1.bias"]
    f["weights"].create_dataset("l1.bias", data=np.round(b).astype(np.int32))


def nan_weight(f):
    d = f["weights/l1.weight"]
    w = d[()]
    w[1, 2] = np.nan
    d[...] = w


def inf_mean(f):
    d = f["normalization/obs_mean"]
    v = d[()]
    v[2] = np.inf
    d[...] = v


def std_zero(f):
    d = f["normalization/obs_std"]
    v = d[()]
    v[3] = 0
    d[...] = v


def scale_negative(f):
    d = f["normalization/act_scale"]
    v = d[()]
    v[1] = -0.5
    d[...] = v


def stats_short(f):
    v = f["normalization/act_offset"][()]
    del f["normalization/act_offset"]
    f["normalization"].create_dataset("act_offset", data=v[:-1])


def set_hidden(f, hidden):
    a = json.loads(f.attrs["arch"])
    a["hidden"] = hidden
    set_str(f, "arch", json.dumps(a))


def huge_layers(f):
    # a tiny file that declares 16000-wide layers (a quarter of a billion parameters)
    set_hidden(f, [16000, 16000])


def big_layers(f):
    # within the bound on parameters (16 M), but the file's tensors are the small network's
    set_hidden(f, [4000, 4000])


def unwritten_tensor(f):
    # the right shape, never written: HDF5 would read zeros
    del f["weights/l1.weight"]
    f["weights"].create_dataset("l1.weight", shape=(29, 40), dtype=np.float32)


def big_unwritten(f):
    # 4000-wide layers, every tensor of the right shape but never written (a few KB of file); the
    # statistics and the rest stay valid
    set_hidden(f, [4000, 4000])
    a = json.loads(f.attrs["arch"])
    w = f["weights"]
    out = a["gmm_modes"] * (2 * a["act_dim"] + 1)
    dims = [a["obs_dim"], 4000, 4000, out]
    for name in list(w):
        del w[name]
    for i in range(3):
        w.create_dataset("l%d.weight" % i, shape=(dims[i + 1], dims[i]), dtype=np.float32)
        w.create_dataset("l%d.bias" % i, shape=(dims[i + 1],), dtype=np.float32)
        if a.get("layer_norm") and i < 2:
            w.create_dataset("ln%d.gain" % i, shape=(dims[i + 1],), dtype=np.float32)
            w.create_dataset("ln%d.bias" % i, shape=(dims[i + 1],), dtype=np.float32)


def partly_written(f):
    # chunked, one chunk of it written
    del f["weights/l1.weight"]
    d = f["weights"].create_dataset("l1.weight", shape=(29, 40), dtype=np.float32, chunks=(8, 8))
    d[0, 0] = 0.5


def extra_tensor(f):
    f["weights"].create_dataset("l9.weight", data=np.zeros((2, 2), np.float32))


def missing_normalization(f):
    del f["normalization"]


def missing_weights(f):
    del f["weights"]


def chunk_not_dividing(f):
    f.attrs["chunk"] = np.int64(4)


def chunk_zero(f):
    f.attrs["chunk"] = np.int64(0)


CASES = [wrong_format, version_2, version_string, missing_arch, arch_garbage, arch_unknown_key, dims_sum, dims_huge,
         keys_not_list, keys_dims_count, missing_task, control_hz_negative, info_not_object, missing_tensor,
         wrong_shape, wrong_rank, int_tensor, nan_weight, inf_mean, std_zero, scale_negative, stats_short,
         extra_tensor, missing_normalization, missing_weights, chunk_not_dividing, chunk_zero, huge_layers, big_layers,
         unwritten_tensor, big_unwritten, partly_written]


def main(argv):
    if len(argv) != 3:
        sys.stderr.write(__doc__)
        return 2
    good, outdir = argv[1], argv[2]
    os.makedirs(outdir, exist_ok=True)
    for case in CASES:
        out = os.path.join(outdir, case.__name__ + ".h5")
        shutil.copyfile(good, out)
        with h5py.File(out, "r+") as f:
            case(f)
    print("made %d" % len(CASES))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
