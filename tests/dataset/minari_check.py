#!/usr/bin/python3
"""minari_check.py -- open a `dataset convert --to minari` output the way Minari's reader does, and
compare every episode with the source dataset.

Minari itself cannot be installed here (no PyPI; Debian packages neither minari nor gymnasium), so
this script follows its read path step by step with h5py, json and numpy (Minari 0.5.3 and main):
  MinariDataset(OUT/data)                      minari/dataset/minari_dataset.py MinariDataset.__init__
    MinariStorage.read(data_path)              minari/dataset/minari_storage.py read, read_raw_metadata
      metadata.json; observation_space and action_space are JSON strings -> deserialize_space
                                               minari/serialization.py (_deserialize_box, _deserialize_dict)
      get_minari_storage(metadata["data_format"]) -> HDF5Storage: data/main_data.hdf5 must exist
                                               minari/dataset/_storages/__init__.py, hdf5_storage.py
    dataset_id parsed by parse_dataset_id; minari_version in supported_dataset_versions
  iterate_episodes -> HDF5Storage.get_episodes: file["episode_<i>"] for i in range(total_episodes);
    infos (_decode_info), observations and actions (_decode_space: Dict -> a group read key by key,
    image Box -> JPEG bytes when jpeg_encoding, else dataset[()]), rewards, terminations, truncations
  -> EpisodeData(id, observations, actions, rewards, terminations, truncations, infos)
  get_episode_metadata: the episode attrs (seed as int); total_steps from the metadata

usage: minari_check.py OUT SOURCE [--expect-keys K1,K2] [--expect-skipped K1,K2] [--expect-id ID]
Exit 0 with one line "minari_check ok ..." when Minari would read it and every value matches the
source; exit 1 with one problem per line otherwise; 2 on usage errors.
"""
import argparse
import json
import os
import re
import sys

try:
    import numpy as np
    import h5py
except ImportError as e:
    print("minari_check: cannot import numpy/h5py (%s); run with /usr/bin/python3" % e, file=sys.stderr)
    sys.exit(2)

# minari/__init__.py (0.5.3)
SUPPORTED_DATASET_VERSIONS = {"0.4.0", "0.4.1", "0.4.2", "0.4.3", "0.5.0", "0.5.1", "0.5.2", "0.5.3"}
# minari/dataset/minari_dataset.py
VERSION_RE = r"(?:-v(?P<version>\d+))"
DATASET_NAME_RE = r"(?:(?P<dataset>[-_\w]+?))"
NAMESPACE_RE = r"(?:(?P<namespace>[-_\w][-_\w/]*[-_\w]+)\/)"
DATASET_ID_RE = re.compile(rf"^{NAMESPACE_RE}?{DATASET_NAME_RE}{VERSION_RE}?$")

problems = []


def fail(msg):
    problems.append(msg)


def check(cond, msg):
    if not cond:
        fail(msg)
    return cond


class Box:
    def __init__(self, shape, dtype, low, high):
        self.shape, self.dtype, self.low, self.high = shape, dtype, low, high


class Dict:
    def __init__(self, spaces):
        self.spaces = dict(sorted(spaces.items()))  # gymnasium sorts a mapping's keys


def deserialize_space(d, where):
    """minari/serialization.py deserialize_space, for the types an export writes."""
    if isinstance(d, str):
        d = json.loads(d)
    t = d.get("type")
    if t == "Box":
        shape = tuple(d["shape"])
        dtype = np.dtype(d["dtype"])
        low = np.array(d["low"], dtype=dtype)
        high = np.array(d["high"], dtype=dtype)
        # gymnasium.spaces.Box: low and high broadcast to shape, low <= high
        check(low.shape in (shape, ()) and high.shape in (shape, ()), "%s: low/high shape %s/%s, shape %s" % (
            where, low.shape, high.shape, shape))
        check(bool(np.all(low <= high)), "%s: low above high" % where)
        return Box(shape, dtype, np.broadcast_to(low, shape), np.broadcast_to(high, shape))
    if t == "Dict":
        return Dict({k: deserialize_space(v, "%s.%s" % (where, k)) for k, v in d["subspaces"].items()})
    raise ValueError("%s: no deserialization for space type %r" % (where, t))


def is_image_space(space):
    """minari/dataset/minari_storage.py is_image_space."""
    return (isinstance(space, Box) and len(space.shape) in {2, 3} and space.shape[0] >= 32
            and space.shape[1] >= 32 and space.dtype == np.uint8 and bool(np.all(space.low == 0))
            and bool(np.all(space.high == 255)))


def decode_space(ref, space, jpeg_encoding, where):
    """HDF5Storage._decode_space."""
    if isinstance(space, Dict):
        if not check(isinstance(ref, h5py.Group), "%s: a Dict space needs a group" % where):
            return None
        out = {}
        for key in ref.keys():
            if not check(key in space.spaces, "%s/%s: not in the Dict space (Minari: KeyError)" % (where, key)):
                continue
            out[key] = decode_space(ref[key], space.spaces[key], jpeg_encoding, "%s/%s" % (where, key))
        return out
    if is_image_space(space):
        # Minari 0.5.3 decodes every image space from JPEG bytes; main does so unless jpeg_encoding is false
        check(not jpeg_encoding, "%s: an image space with jpeg_encoding: Minari would decode raw pixels as JPEG"
              % where)
        fail("%s: an image space (uint8 %s, 0..255): Minari 0.5.3 reads it only as JPEG bytes" % (where, space.shape))
    if not check(isinstance(ref, h5py.Dataset), "%s: a Box space needs a dataset" % where):
        return None
    return ref[()]


def decode_info(group, where):
    """hdf5_storage._decode_info."""
    out = {}
    for k, v in group.items():
        if isinstance(v, h5py.Group):
            out[k] = decode_info(v, where + "/" + k)
        elif isinstance(v, h5py.Dataset):
            out[k] = v[()]
        else:
            fail("%s/%s: infos in an unsupported format" % (where, k))
    return out


def in_space(x, space, where):
    if isinstance(space, Dict):
        return all(in_space(x[k], space.spaces[k], where + "/" + k) for k in space.spaces if k in x)
    ok = check(x.dtype == space.dtype, "%s: dtype %s, space %s" % (where, x.dtype, space.dtype))
    ok = check(x.shape[1:] == space.shape, "%s: rows of shape %s, space %s" % (where, x.shape[1:], space.shape)) and ok
    if ok:
        ok = check(bool(np.all((x >= space.low) & (x <= space.high))), "%s: values outside the space" % where)
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("source")
    ap.add_argument("--expect-keys")
    ap.add_argument("--expect-skipped", default=None)
    ap.add_argument("--expect-id")
    a = ap.parse_args()

    # ---- MinariStorage.read_raw_metadata / read ----
    data_path = os.path.join(a.out, "data")
    if not os.path.isdir(data_path):
        print("minari_check: %s: the data path doesn't exist (Minari: ValueError)" % data_path)
        return 1
    meta_path = os.path.join(data_path, "metadata.json")
    if not os.path.exists(meta_path):
        print("minari_check: %s: no data found in data path (no metadata.json)" % data_path)
        return 1
    with open(meta_path) as fh:
        md = json.load(fh)
    for key in ("observation_space", "action_space"):
        check(isinstance(md.get(key), str), "metadata %s is not a JSON string" % key)
    obs_space = deserialize_space(md["observation_space"], "observation_space")
    act_space = deserialize_space(md["action_space"], "action_space")
    check(md.get("data_format") == "hdf5", "data_format %r (get_minari_storage knows arrow, hdf5, parquet)"
          % md.get("data_format"))
    main_path = os.path.join(data_path, "main_data.hdf5")
    if not os.path.exists(main_path):
        print("minari_check: %s: no main_data.hdf5 (HDF5Storage: ValueError)" % data_path)
        return 1
    jpeg_encoding = bool(md.get("jpeg_encoding", True))
    # ---- MinariDataset.__init__ ----
    for key in ("total_episodes", "total_steps"):
        check(isinstance(md.get(key), int), "metadata %s is not an int" % key)
    dataset_id = md.get("dataset_id")
    if check(isinstance(dataset_id, str), "dataset_id is not a string"):
        m = DATASET_ID_RE.fullmatch(dataset_id)
        check(m is not None and m.group("version") is not None, "dataset_id %r does not parse as "
              "(namespace/)name-v<N> (parse_dataset_id)" % dataset_id)
    check(md.get("minari_version") in SUPPORTED_DATASET_VERSIONS, "minari_version %r not supported"
          % md.get("minari_version"))
    if a.expect_id:
        check(dataset_id == a.expect_id, "dataset_id %r, expected %r" % (dataset_id, a.expect_id))

    src = h5py.File(a.source, "r")
    demos = sorted(src["data"].keys(), key=lambda n: int(n[5:]))
    f = h5py.File(main_path, "r")
    E = md["total_episodes"]
    check(E == len(demos), "total_episodes %d, the source has %d demos" % (E, len(demos)))
    # update_episodes counts the root's links as episodes: nothing else may be there
    check(sorted(f.keys()) == sorted("episode_%d" % i for i in range(E)), "root links %s" % sorted(f.keys()))

    keys = sorted(obs_space.spaces) if isinstance(obs_space, Dict) else None
    o0 = src["data"][demos[0]]["obs"]
    if keys is None:
        keys = list(md.get("observation_keys", []))
    skipped = sorted(set(o0.keys()) - set(keys))
    if a.expect_keys is not None:
        check(",".join(keys) == a.expect_keys, "observation keys %s, expected %s" % (keys, a.expect_keys))
    if a.expect_skipped is not None:
        check(",".join(skipped) == a.expect_skipped, "left out %s, expected %s" % (skipped, a.expect_skipped))
    check(sorted(md.get("skipped_observation_keys", [])) == skipped, "metadata skipped_observation_keys %r, "
          "the source has %s beyond the space" % (md.get("skipped_observation_keys"), skipped))

    # ---- iterate_episodes -> get_episodes -> EpisodeData ----
    steps = 0
    ntrunc = 0
    for i in range(E):
        ep = f["episode_%d" % i]
        where = "episode_%d" % i
        infos = decode_info(ep["infos"], where + "/infos") if "infos" in ep else None
        obs = decode_space(ep["observations"], obs_space, jpeg_encoding, where + "/observations")
        act = decode_space(ep["actions"], act_space, jpeg_encoding, where + "/actions")
        data = {"id": i, "observations": obs, "actions": act, "infos": infos}
        for key in ("rewards", "terminations", "truncations"):
            check(isinstance(ep[key], h5py.Dataset), "%s/%s: not a dataset" % (where, key))
            data[key] = ep[key][:]
        # get_episode_metadata
        attrs = dict(ep.attrs)
        if attrs.get("seed") is not None:
            attrs["seed"] = int(attrs["seed"])
        # EpisodeData: len() is len(rewards); against the source demo
        d = src["data"][demos[i]]
        T = int(d.attrs["num_samples"])
        steps += T
        check(int(attrs.get("id", -1)) == i and int(attrs.get("total_steps", -1)) == T,
              "%s: attrs id/total_steps %s/%s" % (where, attrs.get("id"), attrs.get("total_steps")))
        check(len(data["rewards"]) == T, "%s: %d rewards, %s has %d steps" % (where, len(data["rewards"]),
                                                                             demos[i], T))
        if not isinstance(obs_space, Dict):
            obs = {keys[0]: obs}
        if obs is not None and in_space(obs, obs_space if isinstance(obs_space, Dict) else Dict({keys[0]: obs_space}),
                                         where + "/observations"):
            for k in keys:
                o = obs[k]
                ref = d["obs"][k][:]
                final = d["next_obs"][k][T - 1] if "next_obs" in d else ref[T - 1]
                if not check(o.shape[0] == T + 1, "%s/observations/%s: %d rows, expected N+1 = %d"
                             % (where, k, o.shape[0], T + 1)):
                    continue
                check(np.array_equal(o[:T], ref), "%s/observations/%s: rows differ from %s" % (where, k, demos[i]))
                check(np.array_equal(o[T], final), "%s/observations/%s: the last row is not next_obs of the last step"
                      % (where, k))
        if act is not None and in_space(act, act_space, where + "/actions"):
            check(act.shape == d["actions"].shape and np.array_equal(act, d["actions"][:]),
                  "%s/actions differ from %s" % (where, demos[i]))
        rew = d["rewards"][:] if "rewards" in d else np.zeros(T)
        if not check(data["rewards"].shape == (T,), "%s/rewards: shape %s, expected (%d,)" % (
                where, data["rewards"].shape, T)):
            continue
        check(np.array_equal(data["rewards"], rew), "%s/rewards differ" % where)
        dones = (d["dones"][:] != 0) if "dones" in d else np.zeros(T, bool)
        for key in ("terminations", "truncations"):
            check(data[key].dtype == np.bool_ and data[key].shape == (T,), "%s/%s: %s %s, expected bool (N,)"
                  % (where, key, data[key].dtype, data[key].shape))
        check(np.array_equal(data["terminations"], dones), "%s/terminations are not the dones" % where)
        tr = np.zeros(T, bool)
        tr[-1] = not dones[-1]
        check(np.array_equal(data["truncations"], tr), "%s/truncations: only the end of an unterminated demo" % where)
        check(bool(data["terminations"][-1] or data["truncations"][-1]), "%s: ends neither terminated nor truncated"
              % where)
        ntrunc += int(tr.sum())
    check(md["total_steps"] == steps, "total_steps %s, the episodes hold %d" % (md["total_steps"], steps))
    if problems:
        for p in problems:
            print("minari_check: " + p)
        return 1
    print("minari_check ok episodes=%d steps=%d keys=%s skipped=%s truncated=%d id=%s" % (
        E, steps, ",".join(keys), ",".join(skipped) or "-", ntrunc, dataset_id))
    return 0


if __name__ == "__main__":
    try:
        rc = main()
    except Exception as e:  # what Minari would raise on the same step
        for p in problems:
            print("minari_check: " + p)
        print("minari_check: %s: %s" % (type(e).__name__, str(e).replace("\n", " ")))
        rc = 1
    sys.exit(rc)
