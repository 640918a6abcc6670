#!/usr/bin/env python3
"""scripts/states_f64.py DATA.h5 OUT.f64 -- every demo's `states` rows, float64, concatenated in
demo order (the input of build/capture/cam_visibility)."""
import sys

import h5py
import numpy as np

with h5py.File(sys.argv[1], "r") as f:
    names = sorted(f["data"].keys(), key=lambda s: int(s.split("_")[1]))
    np.concatenate([f["data"][n]["states"][...] for n in names]).astype("<f8").tofile(sys.argv[2])
