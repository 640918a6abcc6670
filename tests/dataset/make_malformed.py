#!/usr/bin/python3
"""make_malformed.py OUTDIR -- write valid and malformed robomimic-layout HDF5 files.

Writes OUTDIR/valid.h5 (3 demos x 20 steps, plain robomimic layout), a few more valid
files (zero demos, native demokit layout, ...) and many malformed variants, each its own
file, plus OUTDIR/manifest.tsv with one line per file (status valid, invalid, or lenient:
strictly invalid but read by robomimic, so the C reader accepts it from other tools):

    <filename> TAB <valid|invalid> TAB <word[|word...]>

For an invalid file, the validator's message should contain one of the '|'-separated
words (compare case-insensitively); for a valid file the third column is '-'.
Deterministic (fixed seed). Run with Debian's /usr/bin/python3 (h5py + numpy).
"""
import json
import os
import shutil
import sys

import numpy as np
import h5py

N = 20
SEED = 20240611
IMG = (8, 8, 3)
ENV_ARGS = {"env_name": "Lift", "type": 1, "env_version": "1.4.1",
            "env_kwargs": {"control_freq": 20, "has_renderer": False, "robots": ["Panda"]}}
NATIVE_ENV_ARGS = {"env_name": "reach", "type": 4, "env_kwargs": {}}
OPEN_WORDS = "truncated|signature|not an hdf5|open"
MODEL_XML = "<mujoco model=\"reach\"><worldbody><body name=\"b\"/></worldbody></mujoco>"


def demo_arrays(rng, n, adim=7, sdim=10):
    """Per-step arrays of one demo; obs/next_obs come from one (n+1)-step trajectory."""
    pos = rng.normal(size=(n + 1, 3))
    obj = rng.normal(size=(n + 1, 10))
    img = rng.integers(0, 256, size=(n + 1,) + IMG, dtype=np.uint8)
    dones = np.zeros(n, dtype=np.int64)
    rewards = np.zeros(n, dtype=np.float64)
    if n:
        dones[-1] = 1
        rewards[-1] = 1.0
    return {
        "actions": rng.uniform(-1.0, 1.0, size=(n, adim)),
        "rewards": rewards,
        "dones": dones,
        "states": rng.normal(size=(n, sdim)),
        "obs": {"robot0_eef_pos": pos[:n], "object": obj[:n], "agentview_image": img[:n]},
        "next_obs": {"robot0_eef_pos": pos[1:], "object": obj[1:], "agentview_image": img[1:]},
    }


def put_key(grp, name, arr):
    if arr.ndim == 4:
        grp.create_dataset(name, data=arr, chunks=(1,) + arr.shape[1:], compression="gzip", compression_opts=4)
    else:
        grp.create_dataset(name, data=arr)


def write_demo(data, name, arrs, native=False, rng=None, next_obs=True, f32=False):
    g = data.create_group(name)
    n = arrs["actions"].shape[0]
    g.attrs["num_samples"] = np.int64(n)
    fl = np.float32 if f32 else np.float64
    g.create_dataset("actions", data=arrs["actions"].astype(fl))
    g.create_dataset("rewards", data=arrs["rewards"])
    g.create_dataset("dones", data=arrs["dones"].astype(np.uint8) if native else arrs["dones"])
    if arrs.get("states") is not None:
        g.create_dataset("states", data=arrs["states"])
    if native:
        ts = 100.0 + np.cumsum(0.05 + rng.uniform(0.0, 0.004, size=n))
        iv = np.zeros(n, dtype=np.uint8)
        iv[n // 2:n // 2 + 3] = 1
        g.create_dataset("timestamps", data=ts)
        g.create_dataset("interventions", data=iv)
        g.attrs["success"] = np.int32(1)
        g.attrs["task"] = np.bytes_(b"reach")
        g.attrs["seed"] = np.int64(1000 + int(name[5:]))
        g.attrs["operator"] = np.bytes_(b"alice")
        g.attrs["device"] = np.bytes_(b"gamepad")
        g.attrs["control_hz"] = np.float64(20.0)
        g.attrs["missed_deadlines"] = np.int64(0)
        g.attrs["model_file"] = np.bytes_(MODEL_XML.encode())
        g.attrs["ep_meta"] = np.bytes_(json.dumps({"lang": "reach the target"}).encode())
    for gname in ("obs", "next_obs") if next_obs else ("obs",):
        og = g.create_group(gname)
        for k, v in arrs[gname].items():
            put_key(og, k, v.astype(fl) if v.dtype.kind == "f" else v)
    return g


def build(path, demos=(0, 1, 2), native=False, masks="fixed", next_obs=True, states=True, f32=False, n=N,
          stored_types=False):
    rng = np.random.default_rng(SEED)
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        env = NATIVE_ENV_ARGS if native else ENV_ARGS
        if native:
            data.attrs["env_args"] = np.bytes_(json.dumps(env).encode())
            data.attrs["demokit_format"] = np.bytes_(b"demokit.dataset")
            data.attrs["demokit_version"] = np.int32(1)
        else:
            data.attrs["env_args"] = json.dumps(env)
        total = 0
        for i in demos:
            arrs = demo_arrays(rng, n)
            if not states:
                arrs["states"] = None
            g = write_demo(data, "demo_%d" % i, arrs, native=native, rng=rng, next_obs=next_obs, f32=f32)
            if stored_types:  # numpy-bool dones, big-endian actions, float16 observations: HDF5 converts
                for name, arr in (("dones", arrs["dones"].astype(bool)), ("actions", arrs["actions"].astype(">f8"))):
                    del g[name]
                    g.create_dataset(name, data=arr)
                for go in ("obs", "next_obs"):
                    del g[go + "/object"]
                    g[go].create_dataset("object", data=arrs[go]["object"].astype(np.float16))
            total += n
        data.attrs["total"] = np.int64(total)
        names = ["demo_%d" % i for i in demos]
        if masks and names:
            mg = f.create_group("mask")
            train, valid = names[:-1] or names, names[-1:]
            if masks == "fixed":
                mg.create_dataset("train", data=np.array(train, dtype="S"))
                mg.create_dataset("valid", data=np.array(valid, dtype="S"))
            else:
                vt = h5py.string_dtype("utf-8")
                mg.create_dataset("train", data=train, dtype=vt)
                mg.create_dataset("valid", data=valid, dtype=vt)


# ---- mutation helpers ------------------------------------------------------------------

def replace(g, name, data=None, **kw):
    if name in g:
        del g[name]
    return g.create_dataset(name, data=data, **kw)


def set_mask(f, train, valid):
    del f["mask"]
    mg = f.create_group("mask")
    mg.create_dataset("train", data=np.array(train, dtype="S"))
    mg.create_dataset("valid", data=np.array(valid, dtype="S"))


def set_env(f, obj_or_text):
    f["data"].attrs["env_args"] = obj_or_text if isinstance(obj_or_text, str) else json.dumps(obj_or_text)


def env_without(key):
    e = dict(ENV_ARGS)
    del e[key]
    return e


def env_with(key, val):
    e = dict(ENV_ARGS)
    e[key] = val
    return e


def image_all(f, maker):
    for d in ("demo_0", "demo_1", "demo_2"):
        for go in ("obs", "next_obs"):
            g = f["data/%s/%s" % (d, go)]
            maker(g, g["agentview_image"][()])


def mut_nan(path, row=3, col=2, val=np.nan):
    def m(f):
        ds = f[path]
        a = ds[()]
        a[(row, col) if a.ndim == 2 else row] = val
        ds[...] = a
    return m


def mut_huge_rows(f):
    big = 2 ** 40
    g = f["data/demo_0"]
    for name, width, dt in (("actions", 7, "f8"), ("states", 10, "f8")):
        replace(g, name, shape=(big, width), maxshape=(None, width), chunks=(4096, width), dtype=dt)
    replace(g, "rewards", shape=(big,), maxshape=(None,), chunks=(4096,), dtype="f8")
    replace(g, "dones", shape=(big,), maxshape=(None,), chunks=(4096,), dtype="i8")
    for go in ("obs", "next_obs"):
        og = g[go]
        replace(og, "robot0_eef_pos", shape=(big, 3), maxshape=(None, 3), chunks=(4096, 3), dtype="f8")
        replace(og, "object", shape=(big, 10), maxshape=(None, 10), chunks=(4096, 10), dtype="f8")
        replace(og, "agentview_image", shape=(big,) + IMG, maxshape=(None,) + IMG, chunks=(1,) + IMG,
                dtype="u1", compression="gzip")
    g.attrs["num_samples"] = np.int64(big)
    f["data"].attrs["total"] = np.int64(big + 2 * N)


def mut_huge_step(f):
    w = 2 ** 31
    for d in ("demo_0", "demo_1", "demo_2"):
        for go in ("obs", "next_obs"):
            replace(f["data/%s/%s" % (d, go)], "object", shape=(N, w), maxshape=(None, w),
                    chunks=(1, 1 << 16), dtype="f8")


def mut_rename(old, new):
    def m(f):
        f.move("data/" + old, "data/" + new)
        set_mask(f, ["demo_0", "demo_1"], [])
    return m


def mut_empty_demo(f):
    g = f["data"].create_group("demo_3")
    arrs = demo_arrays(np.random.default_rng(1), 0)
    g.attrs["num_samples"] = np.int64(0)
    for k in ("actions", "rewards", "dones", "states"):
        g.create_dataset(k, data=arrs[k])
    for go in ("obs", "next_obs"):
        og = g.create_group(go)
        for k, v in arrs[go].items():
            if v.ndim == 4:
                og.create_dataset(k, shape=v.shape, maxshape=(None,) + v.shape[1:], chunks=(1,) + v.shape[1:],
                                  dtype=v.dtype, compression="gzip")
            else:
                og.create_dataset(k, data=v)


def mut_shift(f):
    ds = f["data/demo_1/next_obs/robot0_eef_pos"]
    a = ds[()]
    a[5] += 0.25
    ds[...] = a


def mut_set(path, fn):
    def m(f):
        ds = f[path]
        a = ds[()]
        fn(a)
        ds[...] = a
    return m


LONG = "x" * 63  # names past DS_NAME_MAX - 1 (63) bytes: never cut, so refused whole


def mut_rename_key(old, new):
    def m(f):
        for d in ("demo_0", "demo_1", "demo_2"):
            for go in ("obs", "next_obs"):
                f.move("data/%s/%s/%s" % (d, go, old), "data/%s/%s/%s" % (d, go, new))
    return m


def mut_long_masks(f):
    """Two mask names that differ only past byte 63: cut, they would be one."""
    f["mask"].move("train", "m" * 63 + "_train")
    f["mask"].move("valid", "m" * 63 + "_valid")


def mut_external_nan(f):
    """demo_1/actions behind an external link; the NaN is in the linked file only."""
    a = f["data/demo_1/actions"][()]
    a[3, 2] = np.nan
    with h5py.File(os.path.join(os.path.dirname(f.filename), "external_target.h5"), "w") as t:
        t.create_dataset("pad", data=np.zeros(2048))
        t.create_dataset("actions", data=a)
    del f["data/demo_1/actions"]
    f["data/demo_1/actions"] = h5py.ExternalLink("external_target.h5", "/actions")


def variants():
    """(filename, base, mutate, expected-words). base: 'valid' or 'native'."""
    d0, d1, d2 = "data/demo_0", "data/demo_1", "data/demo_2"
    rng = np.random.default_rng(SEED + 1)
    v = [
        # data group and its attrs
        ("no_data_group.h5", "valid", lambda f: (f.__delitem__("data"), f.__delitem__("mask")), "data"),
        ("data_is_dataset.h5", "valid", lambda f: (f.__delitem__("data"), f.__delitem__("mask"),
                                                  f.create_dataset("data", data=np.zeros(4))), "data"),
        ("no_env_args.h5", "valid", lambda f: f["data"].attrs.__delitem__("env_args"), "env_args"),
        ("env_args_not_json.h5", "valid", lambda f: set_env(f, "{env_name: Lift, type: 1"), "env_args"),
        ("env_args_no_env_name.h5", "valid", lambda f: set_env(f, env_without("env_name")), "env_name|env_args"),
        ("env_args_list.h5", "valid", lambda f: set_env(f, "[\"Lift\", 1, {}]"), "env_args"),
        ("env_args_int_attr.h5", "valid", lambda f: f["data"].attrs.__setitem__("env_args", np.int64(1)), "env_args"),
        ("env_args_type_string.h5", "valid", lambda f: set_env(f, env_with("type", "1")), "type|env_args"),
        ("env_args_kwargs_list.h5", "valid", lambda f: set_env(f, env_with("env_kwargs", [1, 2])), "env_kwargs|env_args"),
        ("total_missing.h5", "valid", lambda f: f["data"].attrs.__delitem__("total"), "total"),
        ("total_wrong.h5", "valid", lambda f: f["data"].attrs.__setitem__("total", np.int64(61)), "total"),
        # demo names and children of data
        ("demo_x.h5", "valid", mut_rename("demo_2", "demo_x"), "demo_x"),
        ("trajectory_1.h5", "valid", mut_rename("demo_2", "trajectory_1"), "trajectory_1"),
        ("data_child_dataset.h5", "valid", lambda f: f["data"].create_dataset("demo_3", data=np.zeros((N, 7))), "demo_3"),
        ("duplicate_index.h5", "valid", lambda f: (f.copy(d1, "data/demo_01"),
                                                  f["data"].attrs.__setitem__("total", np.int64(4 * N))), "demo_01|duplicate"),
        # num_samples
        ("num_samples_missing.h5", "valid", lambda f: f[d1].attrs.__delitem__("num_samples"), "num_samples"),
        ("num_samples_negative.h5", "valid", lambda f: f[d1].attrs.__setitem__("num_samples", np.int64(-20)), "num_samples"),
        ("num_samples_string.h5", "valid", lambda f: f[d1].attrs.__setitem__("num_samples", "20"), "num_samples"),
        ("num_samples_float.h5", "valid", lambda f: f[d1].attrs.__setitem__("num_samples", np.float64(20.0)), "num_samples"),
        ("num_samples_mismatch.h5", "valid", lambda f: (f[d1].attrs.__setitem__("num_samples", np.int64(N - 1)),
                                                       f["data"].attrs.__setitem__("total", np.int64(3 * N - 1))), "num_samples"),
        ("empty_demo.h5", "valid", mut_empty_demo, "num_samples|empty"),
        # actions
        ("actions_missing.h5", "valid", lambda f: f[d1].__delitem__("actions"), "actions"),
        ("actions_1d.h5", "valid", lambda f: replace(f[d1], "actions", f[d1 + "/actions"][:, 0]), "actions"),
        ("actions_3d.h5", "valid", lambda f: replace(f[d1], "actions", f[d1 + "/actions"][()][:, :, None]), "actions"),
        ("actions_int32.h5", "valid", lambda f: replace(f[d1], "actions", np.rint(f[d1 + "/actions"][()]).astype(np.int32)), "actions"),
        ("actions_strings.h5", "valid", lambda f: replace(f[d1], "actions", np.char.mod(b"%.3f", f[d1 + "/actions"][()]).astype("S8")), "actions"),
        ("actions_nan.h5", "valid", mut_nan(d1 + "/actions"), "nan"),
        ("actions_inf.h5", "valid", mut_nan(d1 + "/actions", val=np.inf), "inf"),
        ("actions_out_of_range.h5", "valid", mut_nan(d1 + "/actions", val=1.5), "actions"),
        ("action_dims_differ.h5", "valid", lambda f: replace(f[d2], "actions", f[d2 + "/actions"][:, :6]), "actions|action size|action dim"),
        # rewards, dones, states
        ("rewards_nan.h5", "valid", mut_nan(d0 + "/rewards", row=7), "nan"),
        ("rewards_2d.h5", "valid", lambda f: replace(f[d0], "rewards", f[d0 + "/rewards"][()][:, None]), "rewards"),
        ("rewards_missing.h5", "valid", lambda f: f[d0].__delitem__("rewards"), "rewards"),
        ("dones_wrong_len.h5", "valid", lambda f: replace(f[d0], "dones", f[d0 + "/dones"][:N - 1]), "dones"),
        ("states_short.h5", "valid", lambda f: replace(f[d2], "states", f[d2 + "/states"][:N - 1]), "states"),
        ("states_float32.h5", "valid", lambda f: replace(f[d2], "states", f[d2 + "/states"][()].astype(np.float32)), "states"),
        # obs / next_obs
        ("obs_missing.h5", "valid", lambda f: f[d0].__delitem__("obs"), "obs"),
        ("obs_is_dataset.h5", "valid", lambda f: (f[d0].__delitem__("obs"), f[d0].create_dataset("obs", data=np.zeros((N, 13)))), "obs"),
        ("obs_rows_wrong.h5", "valid", lambda f: replace(f[d0 + "/obs"], "robot0_eef_pos", f[d0 + "/obs/robot0_eef_pos"][:N - 1]), "robot0_eef_pos"),
        ("next_obs_rows_wrong.h5", "valid", lambda f: replace(f[d0 + "/next_obs"], "robot0_eef_pos",
                                                             np.concatenate([f[d0 + "/next_obs/robot0_eef_pos"][()], np.zeros((1, 3))])), "next_obs"),
        ("next_obs_dtype_differs.h5", "valid", lambda f: replace(f[d0 + "/next_obs"], "robot0_eef_pos",
                                                                f[d0 + "/next_obs/robot0_eef_pos"][()].astype(np.float32)), "next_obs"),
        ("next_obs_key_missing.h5", "valid", lambda f: f[d0 + "/next_obs"].__delitem__("object"), "object|next_obs"),
        ("obs_nan.h5", "valid", mut_nan(d2 + "/obs/object", row=11, col=4), "nan"),
        ("next_obs_inf.h5", "valid", mut_nan(d2 + "/next_obs/object", row=0, col=0, val=-np.inf), "inf"),
        ("obs_key_sets_differ.h5", "valid", lambda f: (f[d1 + "/obs"].__delitem__("object"),
                                                      f[d1 + "/next_obs"].__delitem__("object")), "object"),
        ("obs_int64.h5", "valid", lambda f: [replace(f["data/demo_%d/%s" % (i, go)], "object", np.zeros((N, 10), dtype=np.int64))
                                             for i in range(3) for go in ("obs", "next_obs")], "object"),
        ("image_rank5.h5", "valid", lambda f: image_all(f, lambda g, a: replace(
            g, "agentview_image", a[:, None], chunks=(1, 1) + IMG, compression="gzip")), "agentview_image"),
        ("image_rank3_one_demo.h5", "valid", lambda f: [replace(f[d1 + "/" + go], "agentview_image", f[d1 + "/" + go + "/agentview_image"][:, :, :, 0])
                                                        for go in ("obs", "next_obs")], "agentview_image"),
        ("image_float.h5", "valid", lambda f: image_all(f, lambda g, a: replace(
            g, "agentview_image", a.astype(np.float32) / 255.0, chunks=(1,) + IMG, compression="gzip")), "agentview_image"),
        ("image_4_channels.h5", "valid", lambda f: image_all(f, lambda g, a: replace(
            g, "agentview_image", np.concatenate([a, a[..., :1]], axis=3), chunks=(1, 8, 8, 4), compression="gzip")), "agentview_image"),
        # masks
        ("mask_absent_demo.h5", "valid", lambda f: set_mask(f, ["demo_0", "demo_7"], ["demo_2"]), "mask|demo_7"),
        ("mask_integers.h5", "valid", lambda f: replace(f["mask"], "train", np.array([0, 1], dtype=np.int64)), "mask"),
        ("mask_2d.h5", "valid", lambda f: replace(f["mask"], "train", np.array([[b"demo_0"], [b"demo_1"]], dtype="S6")), "mask"),
        ("mask_group.h5", "valid", lambda f: (f["mask"].__delitem__("train"), f["mask"].create_group("train")), "mask"),
        # sizes from the header alone
        ("huge_rows.h5", "valid", mut_huge_rows, "too large|size|num_samples|actions"),
        ("huge_step.h5", "valid", mut_huge_step, "too large|size|object"),
        # demokit attrs on a plain robomimic file
        ("format_wrong_name.h5", "valid", lambda f: (f["data"].attrs.__setitem__("demokit_format", "demokit.datasets"),
                                                    f["data"].attrs.__setitem__("demokit_version", np.int32(1))), "demokit_format|format"),
        ("version_999.h5", "valid", lambda f: (f["data"].attrs.__setitem__("demokit_format", "demokit.dataset"),
                                              f["data"].attrs.__setitem__("demokit_version", np.int32(999))), "demokit_version|version"),
        ("model_file_not_string.h5", "valid", lambda f: f[d0].attrs.__setitem__("model_file", np.int64(3)), "model_file"),
        ("ep_meta_not_json.h5", "valid", lambda f: f[d0].attrs.__setitem__("ep_meta", "{lang: "), "ep_meta"),
        # native layout (demokit_format + demokit_version 1 present, so native rules apply)
        ("native_timestamps_wrong_len.h5", "native", lambda f: replace(f[d1], "timestamps", f[d1 + "/timestamps"][:N - 2]), "timestamps"),
        ("native_interventions_wrong_len.h5", "native", lambda f: replace(f[d1], "interventions",
                                                                         np.zeros(N + 1, dtype=np.uint8)), "interventions"),
        ("native_timestamps_missing.h5", "native", lambda f: f[d1].__delitem__("timestamps"), "timestamps"),
        ("native_timestamps_decreasing.h5", "native", mut_set(d1 + "/timestamps", lambda a: a.__setitem__(9, a[8] - 0.01)), "timestamps"),
        ("native_timestamps_nan.h5", "native", mut_nan(d1 + "/timestamps", row=4), "nan"),
        ("native_interventions_value2.h5", "native", mut_set(d1 + "/interventions", lambda a: a.__setitem__(2, 2)), "interventions"),
        ("native_states_missing.h5", "native", lambda f: f[d2].__delitem__("states"), "states"),
        ("native_success_missing.h5", "native", lambda f: f[d0].attrs.__delitem__("success"), "success"),
        ("native_success_2.h5", "native", lambda f: f[d0].attrs.__setitem__("success", np.int32(2)), "success"),
        ("native_task_not_string.h5", "native", lambda f: f[d0].attrs.__setitem__("task", np.int64(5)), "task"),
        ("native_control_hz_zero.h5", "native", lambda f: f[d0].attrs.__setitem__("control_hz", np.float64(0.0)), "control_hz"),
        ("native_missed_deadlines_negative.h5", "native", lambda f: f[d0].attrs.__setitem__("missed_deadlines", np.int64(-1)), "missed_deadlines"),
        ("native_next_obs_not_shifted.h5", "native", mut_shift, "next_obs"),
        # names that a fixed buffer would cut (refused whole, naming where)
        ("native_task_70_bytes.h5", "native", lambda f: f[d0].attrs.__setitem__("task", np.bytes_(("reach_" + LONG).encode())), "task"),
        ("native_operator_70_bytes.h5", "native", lambda f: f[d2].attrs.__setitem__("operator", "alice_" + LONG), "operator"),
        ("obs_key_70_bytes.h5", "valid", mut_rename_key("object", "object_" + LONG), "object_x"),
        ("mask_names_70_bytes.h5", "valid", mut_long_masks, "mask"),
        ("env_name_70_bytes.h5", "valid", lambda f: set_env(f, env_with("env_name", "Lift_" + LONG)), "env_name"),
        # values behind an external link are the linked file's
        ("external_link_nan.h5", "valid", mut_external_nan, "nan"),
    ]
    del rng
    return v


def raw_variants(valid_bytes):
    rng = np.random.default_rng(SEED + 2)
    n = len(valid_bytes)
    sig = b"\x89HDF\r\n\x1a\n"
    bad_sb = bytearray(valid_bytes)
    bad_sb[8] = 0x07  # superblock version byte
    return [
        ("trunc_0.h5", b"", OPEN_WORDS),
        ("trunc_100.h5", valid_bytes[:100], OPEN_WORDS),
        ("trunc_2048.h5", valid_bytes[:2048], OPEN_WORDS),
        ("trunc_half.h5", valid_bytes[:n // 2], OPEN_WORDS),
        ("trunc_minus10.h5", valid_bytes[:n - 10], OPEN_WORDS),
        ("text_file.h5", b"this is not an HDF5 file\n" * 40, OPEN_WORDS),
        # superblock version 0 so the parser goes past the version byte into random fields
        ("random_with_signature.h5", sig + b"\x00" + rng.integers(0, 256, size=8192, dtype=np.uint8).tobytes(),
         OPEN_WORDS + "|superblock"),
        ("bad_superblock_version.h5", bytes(bad_sb), OPEN_WORDS + "|superblock|version"),
    ]


def main(argv):
    if len(argv) != 1 or argv[0].startswith("-"):
        print("usage: make_malformed.py OUTDIR", file=sys.stderr)
        return 2
    out = argv[0]
    os.makedirs(out, exist_ok=True)
    rows = []

    def path(name):
        return os.path.join(out, name)

    valid_files = [
        ("valid.h5", {}),
        ("valid_native.h5", {"native": True}),
        ("zero_demos.h5", {"demos": (), "masks": None}),
        ("valid_vlen_mask.h5", {"masks": "vlen"}),
        ("valid_no_mask.h5", {"masks": None}),
        ("valid_no_next_obs.h5", {"next_obs": False}),
        ("valid_no_states.h5", {"states": False}),
        ("valid_float32.h5", {"f32": True}),
        ("valid_sparse_index.h5", {"demos": (2, 10, 9)}),
        ("valid_stored_types.h5", {"stored_types": True}),
    ]
    for name, kw in valid_files:
        build(path(name), **kw)
        rows.append((name, "valid", "-"))

    bases = {"valid": path("valid.h5"), "native": path("valid_native.h5")}
    for name, base, mutate, words in variants():
        p = path(name)
        shutil.copyfile(bases[base], p)
        with h5py.File(p, "r+") as f:
            mutate(f)
        rows.append((name, "invalid", words))

    with open(path("valid.h5"), "rb") as fh:
        vb = fh.read()
    for name, content, words in raw_variants(vb):
        with open(path(name), "wb") as fh:
            fh.write(content)
        rows.append((name, "invalid", words))

    # Files that break the strict layout but that robomimic itself reads: the C reader accepts
    # them when they come from other tools (no demokit_format attr); see README "Reading files
    # from other tools". h5_check.py stays strict about them.
    lenient = {"total_missing.h5", "num_samples_float.h5", "rewards_2d.h5", "rewards_missing.h5",
               "states_float32.h5", "obs_int64.h5", "actions_out_of_range.h5"}
    rows = [(n, "lenient" if n in lenient else st, w) for n, st, w in rows]
    with open(path("manifest.tsv"), "w") as fh:
        for r in rows:
            fh.write("\t".join(r) + "\n")
    nvalid = sum(1 for r in rows if r[1] != "invalid")
    print("make_malformed: wrote %d files (%d valid, %d invalid) and manifest.tsv in %s"
          % (len(rows), nvalid, len(rows) - nvalid, out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
