#!/usr/bin/env python3
"""Write a low-dim robomimic-layout file the way robomimic's own tools do (h5py, gzip, no demokit
attrs): data/demo_i/{actions, rewards, dones, states, obs/*, next_obs/*}, num_samples, data.total,
env_args with a robosuite env_name, and mask/train + mask/valid as variable-length strings.

Observation keys: object (10), robot0_eef_pos (3), robot0_eef_quat (4), robot0_gripper_qpos (2),
robot0_joint_pos (7). Actions (7) are a smooth function of the observation, in [-1, 1] like
robomimic's, times --act-scale (default 1).

Usage: make_robomimic.py OUT [--demos 12] [--steps 40] [--env Lift] [--act-scale S] [--act-offset O]
                                [--seed 0] [--no-masks]"""
import json
import sys

import h5py
import numpy as np


def arg(name, default, conv):
    if name in sys.argv:
        return conv(sys.argv[sys.argv.index(name) + 1])
    return default


out = sys.argv[1]
demos = arg("--demos", 12, int)
steps = arg("--steps", 40, int)
env = arg("--env", "Lift", str)
act_scale = arg("--act-scale", 1.0, float)
act_offset = arg("--act-offset", 0.0, float)
seed = arg("--seed", 0, int)
masks = "--no-masks" not in sys.argv

rng = np.random.default_rng(seed)
W = rng.normal(size=(7, 26)) / 4.0
with h5py.File(out, "w") as f:
    data = f.create_group("data")
    data.attrs["env_args"] = json.dumps(
        {"env_name": env, "type": 1, "env_kwargs": {"robots": ["Panda"], "control_freq": 20, "has_renderer": False}})
    total = 0
    names = []
    for d in range(demos):
        n = steps + (d % 3) * 5
        total += n
        t = np.arange(n + 1)[:, None] / float(steps)
        obs = {
            "object": np.sin(t * np.arange(1, 11)[None, :] + d),
            "robot0_eef_pos": 0.1 * np.cos(t * np.arange(1, 4)[None, :] - d) + np.array([[-0.1, 0.0, 1.0]]),
            "robot0_eef_quat": np.tile(np.array([[0.0, 1.0, 0.0, 0.0]]), (n + 1, 1)) + 0.01 * t,
            "robot0_gripper_qpos": np.hstack([0.02 + 0.02 * np.sin(t + d), -0.02 - 0.02 * np.sin(t + d)]),
            "robot0_joint_pos": np.cos(0.5 * t * np.arange(1, 8)[None, :] + 0.1 * d),
        }
        flat = np.hstack([obs[k] for k in ["object", "robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos",
                                            "robot0_joint_pos"]])
        act = np.tanh(flat[:n] @ W.T)
        g = data.create_group("demo_%d" % d)
        names.append("demo_%d" % d)
        g.attrs["num_samples"] = n
        g.create_dataset("actions", data=act * act_scale + act_offset, compression="gzip")
        g.create_dataset("rewards", data=(np.arange(n) == n - 1).astype(np.float64), compression="gzip")
        g.create_dataset("dones", data=(np.arange(n) == n - 1).astype(np.int64), compression="gzip")
        g.create_dataset("states", data=np.zeros((n, 32)), compression="gzip")
        for grp, sl in [("obs", slice(0, n)), ("next_obs", slice(1, n + 1))]:
            o = g.create_group(grp)
            for k, v in obs.items():
                o.create_dataset(k, data=v[sl], compression="gzip", compression_opts=4)
    data.attrs["total"] = total
    if masks:
        dt = h5py.string_dtype()
        nv = max(1, demos // 10)
        f.create_dataset("mask/train", data=names[nv:], dtype=dt)
        f.create_dataset("mask/valid", data=names[:nv], dtype=dt)
