#!/usr/bin/env python3
"""scripts/tile_frames.py -- tile recorded camera frames into one PNG (numpy + zlib, no PIL).

  tile_frames.py DATA.h5 CAMERA OUT.png [--cols 8] [--demos 3] [--scale 2]

One row per demo (demo_0, demo_1, ...), --cols frames per row at evenly spaced steps from the
first to the last (start .. approach .. grasp .. lift/place .. end). CAMERA is the dataset name
under obs/ without the _image suffix, e.g. agentview or robot0_eye_in_hand."""
import argparse
import struct
import zlib

import h5py
import numpy as np


def write_png(path, img):
    h, w, _ = img.shape
    raw = b"".join(b"\x00" + img[y].tobytes() for y in range(h))

    def chunk(tag, data):
        c = struct.pack(">I", len(data)) + tag + data
        return c + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)))
        f.write(chunk(b"IDAT", zlib.compress(raw, 9)))
        f.write(chunk(b"IEND", b""))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("camera")
    ap.add_argument("out")
    ap.add_argument("--cols", type=int, default=8)
    ap.add_argument("--demos", type=int, default=3)
    ap.add_argument("--scale", type=int, default=2)
    a = ap.parse_args()
    rows = []
    with h5py.File(a.data, "r") as f:
        names = sorted(f["data"].keys(), key=lambda s: int(s.split("_")[1]))[: a.demos]
        for n in names:
            fr = f["data"][n]["obs"][a.camera + "_image"][...]
            idx = np.linspace(0, len(fr) - 1, a.cols).round().astype(int)
            tiles = [np.pad(fr[i], ((1, 1), (1, 1), (0, 0)), constant_values=255) for i in idx]
            rows.append(np.concatenate(tiles, axis=1))
    img = np.concatenate(rows, axis=0)
    img = img.repeat(a.scale, axis=0).repeat(a.scale, axis=1)
    write_png(a.out, np.ascontiguousarray(img, dtype=np.uint8))


if __name__ == "__main__":
    main()
