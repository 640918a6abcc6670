#!/usr/bin/python3
"""h5_check.py -- outside-reader interop check of a robomimic-layout HDF5 dataset.

Plays the part of robomimic's get_dataset_info.py (same open mode, same demo sorting,
same mask decoding) plus strict h5py checks of the layout described in dataset/ds.h.

usage: h5_check.py FILE [--expect-demos N] [--expect-images KEY:H:W]... [--native]

Exit 0 and one line "h5_check ok demos=<n> samples=<total>" when the file is fine;
exit 1 with one problem per line (each naming the HDF5 path involved) otherwise;
exit 2 on usage errors. Run it with Debian's /usr/bin/python3 (h5py + numpy).

Native checks (the demokit additions of ds.h) run with --native, and also whenever the
file says data.attrs["demokit_format"] == "demokit.dataset" with demokit_version 1.
"""
import argparse
import json
import os
import re
import select
import signal
import sys
import time

try:
    import numpy as np
    import h5py
except ImportError as e:  # wrong interpreter
    print("h5_check: cannot import numpy/h5py (%s); run with /usr/bin/python3" % e, file=sys.stderr)
    sys.exit(2)

FORMAT_NAME = "demokit.dataset"
FORMAT_VERSION = 1
MAX_ROW_BYTES = 1 << 30        # one step of one dataset
MAX_DATASET_BYTES = 1 << 36    # whole dataset (logical size)
BLOCK_BYTES = 1 << 25          # value scans read this much at a time
DEMO_RE = re.compile(r"demo_([0-9]+)", re.ASCII)


def usage_error(msg):
    print("h5_check: " + msg, file=sys.stderr)
    sys.exit(2)


def parse_image_spec(s):
    parts = s.rsplit(":", 2)
    if len(parts) != 3 or not parts[0]:
        raise argparse.ArgumentTypeError("expected KEY:H:W, got %r" % s)
    try:
        h, w = int(parts[1]), int(parts[2])
    except ValueError:
        raise argparse.ArgumentTypeError("expected KEY:H:W with integer H and W, got %r" % s)
    if h <= 0 or w <= 0:
        raise argparse.ArgumentTypeError("H and W must be positive in %r" % s)
    return (parts[0], h, w)


def exc_text(e):
    s = str(e).strip() or type(e).__name__
    return s.replace("\n", " ")


# ---- attribute helpers: return (value, error-text) ----------------------------------

def attr_int(v):
    if isinstance(v, (bool, np.bool_)):
        return None, "is a boolean, expected an integer"
    if isinstance(v, (int, np.integer)):
        return int(v), None
    if isinstance(v, np.ndarray):
        if v.dtype.kind in "iu" and v.shape == ():
            return int(v), None
        return None, "is an array of dtype %s shape %s, expected a scalar integer" % (v.dtype, v.shape)
    return None, "is %s %r, expected an integer" % (type(v).__name__, v)


def attr_float(v):
    if isinstance(v, (float, np.floating)):
        return float(v), None
    if isinstance(v, np.ndarray) and v.shape == () and v.dtype.kind == "f":
        return float(v), None
    return None, "is %s %r, expected a float" % (type(v).__name__, v)


def attr_str(v):
    if isinstance(v, str):
        return v, None
    if isinstance(v, (bytes, np.bytes_)):
        try:
            return bytes(v).decode("utf-8"), None
        except UnicodeDecodeError:
            return None, "is not valid UTF-8"
    if isinstance(v, np.ndarray) and v.shape == () and v.dtype.kind in "SO":
        return attr_str(v[()])
    return None, "is %s %r, expected a string" % (type(v).__name__, v)


def dt_name(dt):
    try:
        return str(dt) if dt.kind != "S" else "fixed string %s" % dt
    except Exception:
        return repr(dt)


class Checker:
    def __init__(self, native, expect_demos, expect_images):
        self.force_native = native
        self.native = native
        self.expect_demos = expect_demos
        self.expect_images = expect_images
        self.problems = []
        self.ndemos = 0
        self.total = 0
        # cross-demo reference schema: first (sorted) demo that has the item
        self.ref_actions = None      # (dim, demo)
        self.ref_states = None       # (dim, demo)
        self.ref_keys = None         # (frozenset, demo)
        self.ref_keyspec = {}        # key -> (per-step shape, dtype, demo)
        self.demo_names = set()
        self.out = None              # progress/problem stream when run in a child process

    def p(self, where, msg):
        line = "%s: %s" % (where, msg)
        self.problems.append(line)
        if self.out:
            self.out.write("P " + line.replace("\n", " ") + "\n")

    def note(self, where):
        """Say what is being read (so a hang or crash in libhdf5 can be located)."""
        if self.out:
            self.out.write("W " + where.replace("\n", " ") + "\n")

    # ---- generic access -----------------------------------------------------------
    def get(self, grp, name, where):
        """Child object or None (reporting a read failure)."""
        self.note(where)
        try:
            if name not in grp:
                return None
        except Exception as e:
            self.p(where, "cannot look up: %s" % exc_text(e))
            return None
        try:
            return grp[name]
        except Exception as e:
            self.p(where, "cannot open object: %s" % exc_text(e))
            return False

    def get_attr(self, obj, name, where):
        """(present, value); a read failure is reported and counts as present-but-bad."""
        self.note("%s attribute %s" % (where, name))
        try:
            if name not in obj.attrs:
                return False, None
            return True, obj.attrs[name]
        except Exception as e:
            self.p(where, "attribute %s cannot be read: %s" % (name, exc_text(e)))
            return True, None

    def dataset(self, grp, name, where, required=True):
        obj = self.get(grp, name, where)
        if obj is None:
            if required:
                self.p(where, "missing (required dataset)")
            return None
        if obj is False:
            return None
        if not isinstance(obj, h5py.Dataset):
            kind = "a group" if isinstance(obj, h5py.Group) else "not a dataset (%s)" % type(obj).__name__
            self.p(where, "is %s, expected a dataset" % kind)
            return None
        return obj

    def shape_dtype(self, ds, where):
        try:
            shape, dtype = ds.shape, ds.dtype
        except Exception as e:
            self.p(where, "cannot read shape/dtype: %s" % exc_text(e))
            return None, None
        if shape is None:
            self.p(where, "has a null dataspace (no shape)")
            return None, None
        return shape, dtype

    def size_ok(self, shape, dtype, where):
        try:
            isz = dtype.itemsize
        except Exception:
            isz = 8
        row = isz
        for d in shape[1:]:
            row *= int(d)
        total = row * (int(shape[0]) if shape else 1)
        if row > MAX_ROW_BYTES:
            self.p(where, "too large: shape %s is %d bytes per step (limit %d)" % (shape, row, MAX_ROW_BYTES))
            return False
        if total > MAX_DATASET_BYTES:
            self.p(where, "too large: shape %s is %d bytes (limit %d)" % (shape, total, MAX_DATASET_BYTES))
            return False
        return True

    def blocks(self, ds, shape, dtype, where):
        """Yield (start_row, array) blocks; reports a read failure and stops."""
        n = int(shape[0]) if shape else 0
        if not shape:
            try:
                yield 0, np.asarray(ds[()])
            except Exception as e:
                self.p(where, "cannot read: %s" % exc_text(e))
            return
        row = max(1, dtype.itemsize * int(np.prod(shape[1:], dtype=np.int64)))
        step = max(1, BLOCK_BYTES // row)
        for s in range(0, n, step):
            self.note("%s rows %d.." % (where, s))
            try:
                a = ds[s:min(n, s + step)]
            except Exception as e:
                self.p(where, "cannot read rows %d..%d: %s" % (s, min(n, s + step) - 1, exc_text(e)))
                return
            yield s, a

    def scan_float(self, ds, shape, dtype, where, lo=None, hi=None, nondecreasing=False):
        """NaN/Inf scan (+ optional range and monotonic checks) of a float dataset."""
        nan = inf = rng = mono = None
        prev = None
        for s, a in self.blocks(ds, shape, dtype, where):
            if a.size == 0:
                continue
            flat = a.reshape(a.shape[0], -1) if a.ndim >= 1 else a.reshape(1, 1)
            if nan is None:
                m = np.isnan(flat)
                if m.any():
                    r, c = np.argwhere(m)[0]
                    nan = (s + r, c, int(m.sum()))
            if inf is None:
                m = np.isinf(flat)
                if m.any():
                    r, c = np.argwhere(m)[0]
                    inf = (s + r, c, flat[r, c])
            if lo is not None and rng is None:
                fin = np.isfinite(flat)
                m = fin & ((flat < lo) | (flat > hi))
                if m.any():
                    r, c = np.argwhere(m)[0]
                    rng = (s + r, c, flat[r, c])
            if nondecreasing and mono is None:
                v = flat[:, 0]
                if prev is not None:
                    v = np.concatenate([[prev], v])
                    off = s - 1
                else:
                    off = s
                d = np.diff(v)
                bad = np.nonzero(d < 0)[0]
                if bad.size:
                    mono = (off + bad[0] + 1, v[bad[0]], v[bad[0] + 1])
                prev = flat[-1, 0]
        if nan:
            self.p(where, "contains NaN (%d values, first at row %d col %d)" % (nan[2], nan[0], nan[1]))
        if inf:
            self.p(where, "contains Inf (first at row %d col %d: %r)" % inf)
        if rng:
            self.p(where, "value outside [%g, %g] at row %d col %d: %r" % (lo, hi, rng[0], rng[1], rng[2]))
        if mono:
            self.p(where, "not non-decreasing: row %d is %r after %r" % (mono[0], mono[2], mono[1]))

    def scan_01(self, ds, shape, dtype, where):
        for s, a in self.blocks(ds, shape, dtype, where):
            if a.size == 0:
                continue
            flat = a.reshape(-1).astype(np.float64)
            bad = np.nonzero((flat != 0) & (flat != 1))[0]
            if bad.size:
                self.p(where, "values must be 0 or 1; row %d is %r" % (s + bad[0], flat[bad[0]]))
                return

    # ---- per-step dataset of a demo ------------------------------------------------
    def step_ds(self, g, name, where, N, rank=None, kinds="f", exact_dtype=None, required=True):
        """Check existence, dtype, rank and rows. Returns (ds, shape, dtype, sizeok) or None."""
        ds = self.dataset(g, name, where, required)
        if ds is None:
            return None
        shape, dtype = self.shape_dtype(ds, where)
        if shape is None:
            return None
        ok = True
        if exact_dtype is not None:
            if dtype != np.dtype(exact_dtype):
                self.p(where, "dtype is %s, expected %s" % (dt_name(dtype), exact_dtype))
                ok = False
        elif dtype.kind not in kinds:
            want = {"f": "floating point", "fiub": "numeric"}.get(kinds, kinds)
            self.p(where, "dtype is %s, expected %s" % (dt_name(dtype), want))
            ok = False
        if rank is not None and len(shape) != rank:
            self.p(where, "has rank %d (shape %s), expected %d-D" % (len(shape), shape, rank))
            ok = False
        elif len(shape) == 0:
            self.p(where, "is a scalar, expected per-step rows")
            ok = False
        if ok and N is not None and shape[0] != N:
            self.p(where, "has %d rows, expected %d (num_samples)" % (shape[0], N))
            ok = False
        sizeok = self.size_ok(shape, dtype, where) if len(shape) else True
        return ds, shape, dtype, ok and sizeok

    # ---- file level ----------------------------------------------------------------
    def check_file(self, f):
        data = self.get(f, "data", "data")
        if data is None:
            self.p("data", "missing: no 'data' group at the root (not a robomimic dataset)")
            return
        if data is False:
            return
        if not isinstance(data, h5py.Group):
            self.p("data", "is a dataset, expected a group")
            return
        self.check_format(data)
        self.check_env_args(data)

        try:
            names = list(data.keys())
        except Exception as e:
            self.p("data", "cannot list children: %s" % exc_text(e))
            return
        demos = []
        seen = {}
        for name in names:
            m = DEMO_RE.fullmatch(name)
            if not m:
                self.p("data/%s" % name, "child of data is not named demo_<int> (robomimic sorts demos by int(name[5:]))")
                continue
            idx = int(m.group(1))
            seen.setdefault(idx, []).append(name)
            demos.append((idx, name))
        for idx in sorted(seen):
            if len(seen[idx]) > 1:
                self.p("data/%s" % seen[idx][-1], "duplicate demo index %d (data/%s)"
                       % (idx, ", data/".join(seen[idx])))
        demos.sort()
        total = 0
        for idx, name in demos:
            where = "data/%s" % name
            g = self.get(data, name, where)
            if g is None or g is False:
                continue
            if not isinstance(g, h5py.Group):
                self.p(where, "is a dataset, expected a demo group")
                continue
            self.demo_names.add(name)
            n = self.check_demo(g, name)
            if n is not None:
                total += n
        self.ndemos = len(self.demo_names)
        self.total = total

        present, v = self.get_attr(data, "total", "data")
        if not present:
            self.p("data", "attribute total missing")
        elif v is not None:
            t, err = attr_int(v)
            if err:
                self.p("data", "attribute total " + err)
            elif t != total:
                self.p("data", "attribute total=%d but the demos' num_samples sum to %d" % (t, total))

        self.check_masks(f)
        self.check_expectations(data)
        self.robomimic_emulation(f)

    def check_format(self, data):
        pf, fmt = self.get_attr(data, "demokit_format", "data")
        pv, ver = self.get_attr(data, "demokit_version", "data")
        claims = False
        if pf and fmt is not None:
            s, err = attr_str(fmt)
            if err:
                self.p("data", "attribute demokit_format " + err)
            elif s != FORMAT_NAME:
                self.p("data", "attribute demokit_format is %r, expected %r" % (s, FORMAT_NAME))
            else:
                claims = True
        elif self.force_native and not pf:
            self.p("data", "attribute demokit_format missing (--native)")
        version_ok = False
        if pv and ver is not None:
            n, err = attr_int(ver)
            if err:
                self.p("data", "attribute demokit_version " + err)
            elif n != FORMAT_VERSION:
                self.p("data", "attribute demokit_version is %d, this reader knows version %d" % (n, FORMAT_VERSION))
            else:
                version_ok = True
        elif not pv and (claims or self.force_native):
            self.p("data", "attribute demokit_version missing")
        if pv and not pf:
            self.p("data", "attribute demokit_version present without demokit_format")
        # Native rules apply when asked, or when the file claims the known format+version.
        self.native = self.force_native or (claims and version_ok)
        if self.force_native and not (claims and version_ok):
            pass  # already reported; still apply native checks as asked

    def check_env_args(self, data):
        present, v = self.get_attr(data, "env_args", "data")
        if not present:
            self.p("data", "attribute env_args missing (robomimic requires it)")
            return
        if v is None:
            return
        s, err = attr_str(v)
        if err:
            self.p("data", "attribute env_args " + err + " (must be a JSON string)")
            return
        try:
            j = json.loads(s)
        except ValueError as e:
            self.p("data", "attribute env_args is not valid JSON: %s" % exc_text(e))
            return
        if not isinstance(j, dict):
            self.p("data", "attribute env_args is JSON %s, expected an object" % type(j).__name__)
            return
        if "env_name" not in j:
            self.p("data", "attribute env_args has no env_name")
        elif not isinstance(j["env_name"], str):
            self.p("data", "attribute env_args.env_name is %r, expected a string" % (j["env_name"],))
        if "type" not in j:
            self.p("data", "attribute env_args has no type")
        elif isinstance(j["type"], bool) or not isinstance(j["type"], int):
            self.p("data", "attribute env_args.type is %r, expected an integer" % (j["type"],))
        if "env_kwargs" not in j:
            self.p("data", "attribute env_args has no env_kwargs")
        elif not isinstance(j["env_kwargs"], dict):
            self.p("data", "attribute env_args.env_kwargs is %r, expected an object" % (j["env_kwargs"],))

    # ---- demo ----------------------------------------------------------------------
    def check_demo(self, g, name):
        where = "data/" + name
        N = None
        present, v = self.get_attr(g, "num_samples", where)
        if not present:
            self.p(where, "attribute num_samples missing (robomimic requires it)")
        elif v is not None:
            n, err = attr_int(v)
            if err:
                self.p(where, "attribute num_samples " + err)
            elif n < 0:
                self.p(where, "attribute num_samples is negative (%d)" % n)
            elif n == 0:
                self.p(where, "attribute num_samples is 0: empty demo (robomimic needs at least one sample)")
                N = 0
            else:
                N = n
        attr_N = N

        # actions decide the row count used for everything else
        a = self.dataset(g, "actions", where + "/actions")
        rows = None
        a_info = None
        if a is not None:
            shape, dtype = self.shape_dtype(a, where + "/actions")
            if shape is not None:
                ok = True
                if dtype.kind != "f":
                    self.p(where + "/actions", "dtype is %s, expected floating point" % dt_name(dtype))
                    ok = False
                if len(shape) != 2:
                    self.p(where + "/actions", "has rank %d (shape %s), expected 2-D (N, action_dim)" % (len(shape), shape))
                    ok = False
                if len(shape) >= 1:
                    rows = int(shape[0])
                    if attr_N is not None and rows != attr_N:
                        self.p(where, "attribute num_samples=%d but actions has %d rows" % (attr_N, rows))
                if len(shape) == 2:
                    if self.ref_actions is None:
                        self.ref_actions = (shape[1], name)
                    elif shape[1] != self.ref_actions[0]:
                        self.p(where + "/actions", "action dim %d differs from %d in %s" % (shape[1], self.ref_actions[0], self.ref_actions[1]))
                if ok and self.size_ok(shape, dtype, where + "/actions"):
                    a_info = (a, shape, dtype)
        if rows is not None and (attr_N is None or rows != attr_N):
            N = rows  # report the mismatch once, then compare the rest with actions
        if N == 0 and attr_N != 0:
            self.p(where, "empty demo (0 rows)")
        if a_info:
            self.scan_float(*a_info, where + "/actions", lo=-1.0, hi=1.0)

        r = self.step_ds(g, "rewards", where + "/rewards", N, rank=1)
        if r and r[3] and r[2].kind == "f":
            self.scan_float(r[0], r[1], r[2], where + "/rewards")
        d = self.step_ds(g, "dones", where + "/dones", N, rank=1, kinds="fiub")
        if d and d[3]:
            if d[2].kind == "f":
                self.scan_float(d[0], d[1], d[2], where + "/dones")
            self.scan_01(d[0], d[1], d[2], where + "/dones")

        s = self.step_ds(g, "states", where + "/states", N, rank=2, exact_dtype="float64", required=self.native)
        if s is not None:
            if len(s[1]) == 2:
                if self.ref_states is None:
                    self.ref_states = (s[1][1], name)
                elif s[1][1] != self.ref_states[0]:
                    self.p(where + "/states", "state dim %d differs from %d in %s" % (s[1][1], self.ref_states[0], self.ref_states[1]))
            if s[3]:
                self.scan_float(s[0], s[1], s[2], where + "/states")

        t = self.step_ds(g, "timestamps", where + "/timestamps", N, rank=1, exact_dtype="float64", required=self.native)
        if t and t[3]:
            self.scan_float(t[0], t[1], t[2], where + "/timestamps", nondecreasing=True)
        iv = self.step_ds(g, "interventions", where + "/interventions", N, rank=1, exact_dtype="uint8", required=self.native)
        if iv and iv[3]:
            self.scan_01(iv[0], iv[1], iv[2], where + "/interventions")

        obs = self.check_obs_group(g, "obs", name, N, required=True)
        nobs = self.check_obs_group(g, "next_obs", name, N, required=False)
        if obs is not None and nobs is not None:
            ko, kn = set(obs), set(nobs)
            for k in sorted(ko - kn):
                self.p(where + "/next_obs/" + k, "missing (present in obs)")
            for k in sorted(kn - ko):
                self.p(where + "/next_obs/" + k, "has no matching obs/" + k)
            for k in sorted(ko & kn):
                (so, do_, _, _), (sn, dn, _, _) = obs[k], nobs[k]
                if so != sn or do_ != dn:
                    self.p(where + "/next_obs/" + k, "shape %s dtype %s differs from obs/%s shape %s dtype %s"
                           % (sn, dt_name(dn), k, so, dt_name(do_)))
            if self.native:
                for k in sorted(ko & kn):
                    self.check_shift(obs[k], nobs[k], where, k)
        if obs is not None:
            self.check_keys_across(name, obs)

        self.check_demo_attrs(g, where)
        return N if N is not None else (rows if rows is not None else None)

    def check_obs_group(self, g, gname, demo, N, required):
        where = "data/%s/%s" % (demo, gname)
        obj = self.get(g, gname, where)
        if obj is None:
            if required:
                self.p(where, "missing (required group of observation keys)")
            return None
        if obj is False:
            return None
        if not isinstance(obj, h5py.Group):
            self.p(where, "is a dataset, expected a group of observation keys")
            return None
        try:
            keys = list(obj.keys())
        except Exception as e:
            self.p(where, "cannot list keys: %s" % exc_text(e))
            return None
        out = {}
        for k in sorted(keys):
            kw = where + "/" + k
            ds = self.dataset(obj, k, kw)
            if ds is None:
                continue
            shape, dtype = self.shape_dtype(ds, kw)
            if shape is None:
                continue
            ok = True
            if len(shape) < 2 or len(shape) > 4:
                self.p(kw, "has rank %d (shape %s); observations must be (N, ...) with 1 to 3 per-step dims"
                       % (len(shape), shape))
                ok = False
            if dtype.kind != "f" and dtype != np.dtype("uint8"):
                self.p(kw, "dtype is %s, expected floating point or uint8" % dt_name(dtype))
                ok = False
            if len(shape) == 4:
                ok = self.check_image(ds, shape, dtype, kw) and ok
            elif len(shape) in (2, 3) and k.endswith("_image") and dtype == np.dtype("uint8"):
                self.p(kw, "named like an image but has shape %s; images are uint8 (N,H,W,3)" % (shape,))
                ok = False
            if len(shape) >= 1 and N is not None and shape[0] != N:
                self.p(kw, "has %d rows, expected %d (num_samples)" % (shape[0], N))
                ok = False
            sizeok = self.size_ok(shape, dtype, kw) if len(shape) else False
            if ok and sizeok and dtype.kind == "f":
                self.scan_float(ds, shape, dtype, kw)
            out[k] = (tuple(shape), dtype, ds, ok and sizeok)
        return out

    def check_image(self, ds, shape, dtype, kw):
        ok = True
        if dtype != np.dtype("uint8"):
            self.p(kw, "rank-4 observation (image) has dtype %s, expected uint8" % dt_name(dtype))
            ok = False
        if shape[3] != 3:
            self.p(kw, "image has %d channels (shape %s), expected (N,H,W,3)" % (shape[3], shape))
            ok = False
        try:
            chunks, comp = ds.chunks, ds.compression
        except Exception as e:
            self.p(kw, "cannot read storage layout: %s" % exc_text(e))
            return False
        want = (1,) + tuple(shape[1:])
        if chunks is None:
            self.p(kw, "image is not chunked; expected chunk shape %s" % (want,))
            ok = False
        elif tuple(chunks) != want:
            self.p(kw, "image chunk shape %s, expected one frame %s" % (chunks, want))
            ok = False
        if comp != "gzip":
            self.p(kw, "image compression is %s, expected gzip" % comp)
            ok = False
        return ok

    def check_shift(self, o, n, where, k):
        (shape, dtype, ods, ook), (nshape, ndtype, nds, nok) = o, n
        if not (ook and nok) or shape != nshape or dtype != ndtype or shape[0] < 2:
            return
        N = shape[0]
        row = max(1, dtype.itemsize * int(np.prod(shape[1:], dtype=np.int64)))
        step = max(1, BLOCK_BYTES // row)
        for s in range(0, N - 1, step):
            e = min(N - 1, s + step)
            self.note("%s/next_obs/%s rows %d.." % (where, k, s))
            try:
                a = ods[s + 1:e + 1]
                b = nds[s:e]
            except Exception as ex:
                self.p(where + "/next_obs/" + k, "cannot read: %s" % exc_text(ex))
                return
            if a.shape != b.shape:
                self.p(where + "/next_obs/" + k, "read %s rows but obs gave %s" % (b.shape, a.shape))
                return
            if not np.array_equal(a, b):
                neq = np.nonzero(~np.all((a == b).reshape(a.shape[0], -1), axis=1))[0]
                t = s + int(neq[0]) if neq.size else s
                self.p(where + "/next_obs/" + k, "next_obs[%d] != obs[%d] (native files store next_obs[t] = obs[t+1])" % (t, t + 1))
                return

    def check_keys_across(self, demo, obs):
        where = "data/%s/obs" % demo
        keys = frozenset(obs)
        if self.ref_keys is None:
            self.ref_keys = (keys, demo)
        elif keys != self.ref_keys[0]:
            ref, rd = self.ref_keys
            for k in sorted(ref - keys):
                self.p(where + "/" + k, "missing (present in %s; demos must share obs keys)" % rd)
            for k in sorted(keys - ref):
                self.p(where + "/" + k, "not present in %s (demos must share obs keys)" % rd)
        for k, (shape, dtype, _, _) in sorted(obs.items()):
            spec = (shape[1:], dtype)
            if k not in self.ref_keyspec:
                self.ref_keyspec[k] = (spec, demo)
            elif self.ref_keyspec[k][0] != spec:
                (rs, rdt), rd = self.ref_keyspec[k]
                self.p(where + "/" + k, "per-step shape %s dtype %s differs from %s's %s %s"
                       % (spec[0], dt_name(spec[1]), rd, rs, dt_name(rdt)))

    def check_demo_attrs(self, g, where):
        def req(name):
            present, v = self.get_attr(g, name, where)
            if not present:
                if self.native:
                    self.p(where, "attribute %s missing (native)" % name)
                return None, False
            return v, v is not None

        checks = [("success", "int"), ("task", "str"), ("seed", "int"), ("operator", "str"),
                  ("device", "str"), ("control_hz", "float"), ("missed_deadlines", "int")]
        if self.native:
            for name, kind in checks:
                v, ok = req(name)
                if not ok:
                    continue
                val, err = {"int": attr_int, "str": attr_str, "float": attr_float}[kind](v)
                if err:
                    self.p(where, "attribute %s %s" % (name, err))
                    continue
                if name == "success" and val not in (0, 1):
                    self.p(where, "attribute success is %d, expected 0 or 1" % val)
                if name == "control_hz" and not (np.isfinite(val) and val > 0):
                    self.p(where, "attribute control_hz is %r, expected a finite value > 0" % val)
                if name == "missed_deadlines" and val < 0:
                    self.p(where, "attribute missed_deadlines is %d, expected >= 0" % val)
        present, v = self.get_attr(g, "model_file", where)
        if present and v is not None:
            _, err = attr_str(v)
            if err:
                self.p(where, "attribute model_file " + err)
        present, v = self.get_attr(g, "ep_meta", where)
        if present and v is not None:
            s, err = attr_str(v)
            if err:
                self.p(where, "attribute ep_meta " + err + " (must be a JSON string)")
            else:
                try:
                    j = json.loads(s)
                    if not isinstance(j, dict):
                        self.p(where, "attribute ep_meta is JSON %s, expected an object" % type(j).__name__)
                except ValueError as e:
                    self.p(where, "attribute ep_meta is not valid JSON: %s" % exc_text(e))

    # ---- masks -----------------------------------------------------------------------
    def check_masks(self, f):
        m = self.get(f, "mask", "mask")
        if m is None or m is False:
            return
        if not isinstance(m, h5py.Group):
            self.p("mask", "is a dataset, expected a group of filter keys")
            return
        try:
            names = sorted(m.keys())
        except Exception as e:
            self.p("mask", "cannot list: %s" % exc_text(e))
            return
        for name in names:
            where = "mask/" + name
            ds = self.dataset(m, name, where)
            if ds is None:
                continue
            shape, dtype = self.shape_dtype(ds, where)
            if shape is None:
                continue
            strtype = None
            try:
                strtype = h5py.check_string_dtype(dtype)
            except Exception:
                pass
            if dtype.kind != "S" and strtype is None:
                self.p(where, "mask dtype is %s, expected byte strings naming demos" % dt_name(dtype))
                continue
            if len(shape) != 1:
                self.p(where, "mask has rank %d (shape %s), expected 1-D" % (len(shape), shape))
                continue
            if shape[0] > 100000000:
                self.p(where, "mask too large (%d entries)" % shape[0])
                continue
            try:
                vals = ds[()]
            except Exception as e:
                self.p(where, "cannot read mask: %s" % exc_text(e))
                continue
            for i, v in enumerate(vals):
                if isinstance(v, str):
                    self.p(where, "entry %d is a str, robomimic expects bytes (elem.decode)" % i)
                    break
                try:
                    s = bytes(v).decode("utf-8")
                except Exception:
                    self.p(where, "entry %d is not UTF-8" % i)
                    continue
                if s not in self.demo_names:
                    self.p(where, "mask entry %d names %r, which is not a demo in data" % (i, s))

    def check_expectations(self, data):
        if self.expect_demos is not None and self.ndemos != self.expect_demos:
            self.p("data", "has %d demos, expected %d" % (self.ndemos, self.expect_demos))
        for key, h, w in self.expect_images:
            if not self.demo_names:
                self.p("data/*/obs/" + key, "expected image key but the file has no demos")
                continue
            for name in sorted(self.demo_names, key=lambda n: int(n[5:])):
                where = "data/%s/obs/%s" % (name, key)
                try:
                    obj = data[name].get("obs")
                    ds = obj.get(key) if isinstance(obj, h5py.Group) else None
                except Exception:
                    ds = None
                if not isinstance(ds, h5py.Dataset):
                    self.p(where, "expected image key missing")
                    continue
                try:
                    shape, dtype = ds.shape, ds.dtype
                except Exception:
                    continue
                if shape is None or len(shape) != 4 or tuple(shape[1:]) != (h, w, 3) or dtype != np.dtype("uint8"):
                    self.p(where, "expected uint8 image (N,%d,%d,3), got %s shape %s" % (h, w, dt_name(dtype), shape))

    def robomimic_emulation(self, f):
        """The structural steps of robomimic's get_dataset_info.py (value reads done above)."""
        try:
            demos = list(f["data"].keys())
            inds = np.argsort([int(elem[5:]) for elem in demos])
            demos = [demos[i] for i in inds]
            for ep in demos:
                f["data/{}/actions".format(ep)].shape[0]
            if "mask" in f:
                for fk in [k for k in f["mask"]]:
                    sorted([elem.decode("utf-8") for elem in np.array(f["mask/{}".format(fk)][:])])
            json.loads(f["data"].attrs["env_args"])
            if demos:
                for k in f["data/{}/obs".format(demos[0])]:
                    f["data/{}/obs/{}".format(demos[0], k)].dtype
                    f["data/{}/obs/{}".format(demos[0], k)].shape
        except Exception as e:
            self.p("robomimic", "get_dataset_info.py would fail: %s: %s" % (type(e).__name__, exc_text(e)))


def main(argv):
    ap = argparse.ArgumentParser(prog="h5_check.py", description=__doc__.split("\n")[0])
    ap.add_argument("file")
    ap.add_argument("--expect-demos", type=int, default=None, metavar="N")
    ap.add_argument("--expect-images", type=parse_image_spec, action="append", default=[], metavar="KEY:H:W")
    ap.add_argument("--native", action="store_true")
    ap.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                    help="give up when reading makes no progress for this long (0: never; default 60)")
    args = ap.parse_args(argv)  # exits 2 on usage errors
    if args.expect_demos is not None and args.expect_demos < 0:
        usage_error("--expect-demos must be >= 0")
    if not os.path.exists(args.file):
        usage_error("%s: no such file" % args.file)
    if os.path.isdir(args.file):
        usage_error("%s: is a directory" % args.file)

    ck = Checker(args.native, args.expect_demos, args.expect_images)
    problems, result = run_guarded(lambda out: check_path(ck, args.file, out), args.timeout)
    if problems or result is None:
        for line in problems or ["file: checker produced no result"]:
            print(line)
        return 1
    print("h5_check ok demos=%d samples=%d" % result)
    return 0


def check_path(ck, path, out):
    """Runs in the child: writes P/W lines and finally 'R <demos> <total>'."""
    ck.out = out
    f = None
    ck.note("file (open swmr=True libver=latest)")
    try:
        f = h5py.File(path, "r", swmr=True, libver="latest")
    except Exception as e:
        ck.p("file", "cannot open as HDF5 the way robomimic does (swmr=True, libver=latest): %s" % exc_text(e))
    ck.note("file (plain open)")
    try:
        with h5py.File(path, "r") as f2:
            list(f2.keys())
    except Exception as e:
        ck.p("file", "cannot open as HDF5 with plain h5py.File(path, 'r'): %s" % exc_text(e))
    if f is not None:
        try:
            ck.check_file(f)
        except Exception as e:  # defensive: never a traceback for a bad file
            ck.p("file", "unexpected error while checking: %s: %s" % (type(e).__name__, exc_text(e)))
        finally:
            try:
                f.close()
            except Exception:
                pass
    out.write("R %d %d\n" % (ck.ndemos, ck.total))


def run_guarded(fn, timeout):
    """Run fn(stream) in a forked child so that a libhdf5 crash or hang on a corrupt file
    becomes a reported problem. timeout: seconds without progress before giving up (0: never).
    Returns (problems, (ndemos, total) or None)."""
    rfd, wfd = os.pipe()
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        os.close(rfd)
        code = 0
        try:
            with os.fdopen(wfd, "w", buffering=1) as out:
                try:
                    fn(out)
                except BaseException as e:
                    out.write("P file: unexpected error while checking: %s: %s\n" % (type(e).__name__, exc_text(e)))
        except BaseException:
            code = 3
        os._exit(code)
    os.close(wfd)
    problems, result, where = [], None, "file"
    buf = b""
    timed_out = False
    deadline = time.monotonic() + timeout if timeout > 0 else None
    while True:
        wait = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready, _, _ = select.select([rfd], [], [], wait)
        if not ready:
            timed_out = True
            break
        chunk = os.read(rfd, 65536)
        if not chunk:
            break
        if deadline is not None:
            deadline = time.monotonic() + timeout
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for raw in lines:
            line = raw.decode("utf-8", "replace")
            tag, _, rest = line.partition(" ")
            if tag == "P":
                problems.append(rest)
            elif tag == "W":
                where = rest
            elif tag == "R":
                a, b = rest.split()
                result = (int(a), int(b))
    os.close(rfd)
    if timed_out:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    if timed_out:
        problems.append("%s: no progress for %gs while reading it (libhdf5 hang on corrupt metadata?)"
                        % (where, timeout))
        result = None
    elif os.WIFSIGNALED(status):
        problems.append("%s: libhdf5 crashed (signal %d) while reading it (corrupt file?)"
                        % (where, os.WTERMSIG(status)))
        result = None
    elif os.WEXITSTATUS(status) != 0 and not problems:
        problems.append("file: checker child exited with status %d" % os.WEXITSTATUS(status))
    return problems, result


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
