#!/usr/bin/env python3
"""policy_forward.py -- a standalone reference reader for demokit policy files (policy.h5).

Needs only h5py and numpy. Copy it anywhere: it does not import demokit.

    python3 policy_forward.py POLICY.h5                 check the file, print a summary
    python3 policy_forward.py POLICY.h5 OBS OUT         also compute deterministic actions
    python3 policy_forward.py POLICY.h5 OBS OUT KEY=FRAMES.npy ...
                                                        a policy with cameras: each camera's frames
    python3 policy_forward.py POLICY.h5 OBS OUT NOISE   a diffusion policy: one DDIM plan

OBS is either a .npy array or a raw little-endian float32 file holding observations [B, obs_dim]
(the policy's obs_keys concatenated in order; a raw file's B is its size / (4 obs_dim)). For a
recurrent policy (arch "rnn_layers" > 0) the B rows are the consecutive steps of one episode.
OUT receives the actions [B, act_dim] in float64: a .npy file if the name ends in ".npy", otherwise
raw little-endian float64. For a policy with cameras, OBS holds the low-dim keys only and each camera
key (arch "encoders") gets KEY=FRAMES.npy, uint8 frames [B, H, W, C] as the camera gives them. On success the last line printed starts with "policy_forward ok"; on a
malformed file the script prints "policy_forward: <file>: <problem>" to stderr and exits with 1.

A diffusion policy (arch "diffusion": {obs_horizon, horizon, exec, train_steps, sample_steps, sampler,
temb, clip, schedule "squaredcos_cap_v2", prediction "sample" or "epsilon"}): OBS holds its obs_horizon raw
observations (oldest first), NOISE the starting noise x_T [horizon * act_dim] (float32, .npy or raw),
and OUT receives the plan [horizon, act_dim] in environment units. The network is the denoiser: its
input is [the normalized observations | x | emb(k)], emb(k) = [sin(k f_j), cos(k f_j)], f_j =
10000^(-j / (temb/2 - 1)), its output the clean chunk (prediction "sample") or the noise eps. The schedule: f(t) = cos((t + 0.008) / 1.008 pi/2)^2,
beta_i = min(1 - f((i+1)/T) / f(i/T), 0.999), abar = cumprod(1 - beta) over T = train_steps. DDIM (eta 0)
with r = T // sample_steps: for s = sample_steps-1 .. 0, k = s r, abar_prev = abar[k - r] (1 when k < r):
x0 = clip(the output) or clip((x - sqrt(1 - abar_k) eps) / sqrt(abar_k)), eps' = (x - sqrt(abar_k) x0) / sqrt(1 - abar_k),
x = sqrt(abar_prev) x0 + sqrt(1 - abar_prev) eps'; the plan is clip(x), each action mapped through
act_offset/act_scale. DDPM sampling draws fresh noise at every step, which this reader does not take.
With "denoiser": "unet" (absent: "mlp") the network is a 1-D temporal U-Net (arch "unet", below).

The file layout (bc/bc.h, bc/README.md):
  /                 attrs  format = "demokit.policy", version = 1, arch = network JSON, obs_keys = JSON
                           list of names, obs_dims = JSON list of sizes, task, control_hz, algo, info
  /normalization/obs_mean, obs_std      float32 [obs_dim]   x = (obs - obs_mean) / obs_std
  /normalization/act_offset, act_scale  float32 [act_dim]   action = act_offset + act_scale * a
  /weights/l<i>.weight [out, in], l<i>.bias [out]           Linear layers (y = x W^T + b, torch layout)
  /weights/ln<i>.gain, ln<i>.bias [out]                     LayerNorm of hidden layer i (layer_norm only)
  /weights/lstm<k>.weight_ih [4H, in], weight_hh [4H, H], bias_ih [4H], bias_hh [4H]
                                                            LSTM layer k (rnn_layers > 0; torch.nn.LSTM)

A policy with cameras (arch "encoders": [{"key", "frame": [H, W, C], "crop": [h, w], "encoder":
{"input": [C, h, w], "layers": [...]}}]) runs each camera's encoder on the centre crop of its frame
(rows (H - h) // 2.., columns (W - w) // 2..), as float / 255 in [C, h, w] order, through its layers:
  conv k             torch.nn.Conv2d: /weights/enc<i>.conv<k>.weight [out, in, kh, kw], .bias [out]
  relu               max(x, 0)
  spatial_softmax k  1x1 conv (enc<i>.spatial_softmax<k>.weight [K, C, 1, 1], .bias [K]), softmax over
                     the H*W positions of each map, expected x = sum p * linspace(-1, 1, W)[col],
                     y = sum p * linspace(-1, 1, H)[row]; output (x0, y0, x1, y1, ...)
  flatten            reshape to a vector
  linear k           enc<i>.linear<k>.weight [out, in], .bias [out] on the flattened input
and the trunk reads [normalized low-dim keys | encoder 0's output | encoder 1's | ...].

A recurrent policy (BC-RNN) first runs its LSTM, torch.nn.LSTM's equations with gates i, f, g, o:
  z = x W_ih^T + b_ih + h W_hh^T + b_hh = [z_i, z_f, z_g, z_o]  (H each)
  c = sigmoid(z_f) c + sigmoid(z_i) tanh(z_g);  h = sigmoid(z_o) tanh(c)
layer by layer (layer k+1 reads layer k's h); the MLP below reads the top layer's h. h and c start
at zero and go back to zero every rnn_horizon steps (the training sequences' length).

The network (computed here in float64; the C library computes in float32):
  for each hidden layer i:  z = x W_i^T + b_i
                            if layer_norm: z = (z - mean(z)) / sqrt(var(z) + 1e-5) * gain_i + bias_i
                                           (mean/var over the row, biased variance)
                            x = act(z)   act = relu | elu (alpha 1) | tanh
  output:                   o = x W_n^T + b_n          (n = number of hidden layers)
A U-Net (arch "unet": {"down_dims": [d_0, ..], "kernel": k, "groups": G, "horizon": T, "temb": E}, the
denoiser of "denoiser": "unet"; Diffusion Policy's ConditionalUnet1D with cond_predict_scale, its
state_dict's tensor names) reads the row [global cond (obs_dim - act_dim - E) | sample [T, C] | step
embedding (E)], C = act_dim / T, and returns the chunk [T, C]; inside, activations are [channels, T]:
  step features s = L3(mish(L1(emb)))   L1 = diffusion_step_encoder.1 (E -> 4E), L3 = .3 (4E -> E)
  cond = [s | global cond];   mish(x) = x tanh(log(1 + e^x))
  block P (in -> out): h = mish(GN(conv_k(x)))  (P.blocks.0.block.0 conv, .block.1 GroupNorm(G), eps 1e-5)
                       [scale | bias] = P.cond_encoder.1(mish(cond)); h = scale h + bias (per channel)
                       h = mish(GN(conv_k(h)))  (P.blocks.1.block.*); out = h + x, or + P.residual_conv(x)
  down i: x = block down_modules.i.0 (-> d_i), block .i.1; skip_i = x; but at the last level
          x = down_modules.i.2.conv(x) (Conv1d(d_i, d_i, 3, stride 2, pad 1))
  mid: blocks mid_modules.0, .1
  up j = 0..n-2 (i = n-2-j): x = [x | skip_{i+1}] (channels), blocks up_modules.j.0 (-> d_i), .j.1,
          x = up_modules.j.2.conv(x) (ConvTranspose1d(d_i, d_i, 4, stride 2, pad 1), weight [in, out, 4])
  final: x = mish(GN(final_conv.0.block.0(x))) (block.1 the GroupNorm); out = final_conv.1(x) (1x1 -> C)
  convolutions are torch's Conv1d (weight [out, in, k], padding k // 2).

The deterministic action a from the output o (A = act_dim):
  mse       a = o (tanh(o) if arch "tanh")                      o has A values
  gaussian  a = tanh(mu), o = [mu (A), raw log-std (A)]
  gmm       o = [means (K*A, mode-major), raw std (K*A), logits (K)]; k = argmax logits (the first
            on ties); a = means[k] (tanh(means[k]) if arch "tanh")
"""
import json
import math
import sys

import h5py
import numpy as np

FORMAT = "demokit.policy"
VERSION = 1
ARCH_FORMAT = "demokit.nn_arch"
ARCH_VERSION = 1
LN_EPS = 1e-5
ACTIVATIONS = ("relu", "elu", "tanh")
HEADS = ("mse", "gaussian", "gmm")
ARCH_KEYS = ("format", "version", "obs_dim", "act_dim", "hidden", "activation", "layer_norm", "head", "tanh",
             "gmm_modes", "gmm_min_std", "log_std_min", "log_std_max", "rnn_layers", "rnn_hidden", "rnn_horizon",
             "unet")
UNET_KEYS = ("down_dims", "kernel", "groups", "horizon", "temb")


class PolicyError(Exception):
    pass


def _str_attr(f, name):
    if name not in f.attrs:
        raise PolicyError("attribute '%s' is missing" % name)
    v = f.attrs[name]
    if isinstance(v, np.ndarray) and v.shape == ():
        v = v[()]
    if isinstance(v, (bytes, np.bytes_)):
        v = v.decode("utf-8")
    if not isinstance(v, str):
        raise PolicyError("attribute '%s' is not a string" % name)
    return v


def _json_attr(f, name):
    s = _str_attr(f, name)
    try:
        return json.loads(s)
    except ValueError as e:
        raise PolicyError("attribute '%s' is not valid JSON (%s)" % (name, e))


def _int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _check_arch(arch):
    """The fields this reader uses, validated; defaults as nn_arch_default."""
    if not isinstance(arch, dict):
        raise PolicyError("attribute 'arch' is not a JSON object")
    if arch.get("format") != ARCH_FORMAT:
        raise PolicyError("arch format %r is not %r" % (arch.get("format"), ARCH_FORMAT))
    if arch.get("version") != ARCH_VERSION:
        raise PolicyError("arch version %r is not %d" % (arch.get("version"), ARCH_VERSION))
    for k in ("obs_dim", "act_dim", "hidden", "head"):
        if k not in arch:
            raise PolicyError("arch has no %r" % k)
    arch = dict(arch)
    encoders = _check_encoders(arch.pop("encoders")) if "encoders" in arch else []
    diffusion = _check_diffusion(arch.pop("diffusion")) if "diffusion" in arch else None
    for k in arch:
        if k not in ARCH_KEYS:  # the C reader refuses unknown keys too: they are typos
            raise PolicyError("arch has an unknown key %r" % k)
    a = {
        "obs_dim": arch["obs_dim"],
        "act_dim": arch["act_dim"],
        "hidden": arch["hidden"],
        "activation": arch.get("activation", "relu"),
        "layer_norm": bool(arch.get("layer_norm", False)),
        "head": arch["head"],
        "tanh": bool(arch.get("tanh", False)),
        "gmm_modes": arch.get("gmm_modes", 5),
        "rnn_layers": arch.get("rnn_layers", 0),
        "rnn_hidden": arch.get("rnn_hidden", 400),
        "rnn_horizon": arch.get("rnn_horizon", 10),
        "encoders": encoders,
        "diffusion": diffusion,
        "unet": _check_unet(arch["unet"], arch["obs_dim"], arch["act_dim"]) if "unet" in arch else None,
    }
    if diffusion and (diffusion["denoiser"] == "unet") != (a["unet"] is not None):
        raise PolicyError("arch diffusion: the denoiser is %r but the network %s a U-Net"
                          % (diffusion["denoiser"], "is" if a["unet"] else "is not"))
    if a["unet"] and (a["hidden"] or a["head"] != "mse" or a.get("tanh") or arch.get("rnn_layers", 0)):
        raise PolicyError("arch unet: a U-Net has an MSE head without tanh, no LSTM and no hidden layers")
    if not (_int(a["obs_dim"]) and a["obs_dim"] >= 1 and _int(a["act_dim"]) and a["act_dim"] >= 1):
        raise PolicyError("arch obs_dim/act_dim are not sizes")
    if not isinstance(a["hidden"], list) or not all(_int(h) and h >= 1 for h in a["hidden"]):
        raise PolicyError("arch hidden is not a list of sizes")
    if a["activation"] not in ACTIVATIONS:
        raise PolicyError("arch activation %r is not one of %s" % (a["activation"], ACTIVATIONS))
    if a["head"] not in HEADS:
        raise PolicyError("arch head %r is not one of %s" % (a["head"], HEADS))
    if not (_int(a["gmm_modes"]) and a["gmm_modes"] >= 1):
        raise PolicyError("arch gmm_modes is not a count")
    if not all(_int(a[k]) and a[k] >= lo for k, lo in (("rnn_layers", 0), ("rnn_hidden", 1), ("rnn_horizon", 1))):
        raise PolicyError("arch rnn_layers/rnn_hidden/rnn_horizon are not sizes")
    return a


def _check_unet(u, obs_dim, act_dim):
    if not isinstance(u, dict) or sorted(u) != sorted(UNET_KEYS):
        raise PolicyError("arch unet must have exactly %s" % ", ".join(UNET_KEYS))
    d = u["down_dims"]
    if not isinstance(d, list) or not 1 <= len(d) <= 4 or not all(_int(c) and 1 <= c <= 4096 for c in d):
        raise PolicyError("arch unet: down_dims must be 1..4 channel counts")
    if not all(_int(u[k]) for k in ("kernel", "groups", "horizon", "temb")) or u["kernel"] % 2 == 0 \
            or not 1 <= u["kernel"] <= 15 or u["groups"] < 1 or any(c % u["groups"] for c in d) \
            or not 1 <= u["horizon"] <= 1024 or u["horizon"] % (1 << (len(d) - 1)) or u["temb"] % 2 \
            or not 2 <= u["temb"] <= 1024 or act_dim % u["horizon"] or obs_dim < act_dim + u["temb"]:
        raise PolicyError("arch unet: sizes out of range")
    return u


DIFFUSION_KEYS = ("obs_horizon", "horizon", "exec", "train_steps", "sample_steps", "sampler", "temb", "clip",
                  "schedule", "prediction")


def _check_diffusion(d):
    if not isinstance(d, dict) or sorted(k for k in d if k != "denoiser") != sorted(DIFFUSION_KEYS):
        raise PolicyError("arch diffusion must have exactly %s (and denoiser)" % ", ".join(DIFFUSION_KEYS))
    if d.get("denoiser", "mlp") not in ("mlp", "unet"):
        raise PolicyError("arch diffusion: denoiser %r is not mlp or unet" % (d["denoiser"],))
    if d["schedule"] != "squaredcos_cap_v2" or d["prediction"] not in ("epsilon", "sample") \
            or d["sampler"] not in ("ddim", "ddpm"):
        raise PolicyError("arch diffusion: schedule, prediction or sampler unknown")
    # the C loader's bounds, checked before anything is sized by them
    limits = {"obs_horizon": 16, "horizon": 64, "exec": 64, "train_steps": 1000, "sample_steps": 1000, "temb": 1024}
    if not all(_int(d[k]) and 1 <= d[k] <= hi for k, hi in limits.items()) or d["temb"] % 2 \
            or d["train_steps"] < 2 or d["sample_steps"] > d["train_steps"] or d["exec"] > d["horizon"]:
        raise PolicyError("arch diffusion: sizes out of range")
    if isinstance(d["clip"], bool) or not isinstance(d["clip"], (int, float)) or not 0 < d["clip"] <= 1e6:
        raise PolicyError("arch diffusion: clip is not in (0, 1e6]")
    T = d["train_steps"]
    f = [math.cos(((i / T) + 0.008) / 1.008 * math.pi / 2) ** 2 for i in range(T + 1)]
    betas = np.array([min(1 - f[i + 1] / f[i], 0.999) for i in range(T)])
    d = dict(d)
    d["abar"] = np.cumprod(1 - betas)
    d["denoiser"] = d.get("denoiser", "mlp")
    return d


def embed(temb, k):
    h = temb // 2
    f = np.exp(-math.log(10000.0) * np.arange(h) / (h - 1)) if h > 1 else np.ones(1)
    return np.concatenate([np.sin(k * f), np.cos(k * f)])


def diffusion_plan(p, obs, noise):
    """One DDIM plan [horizon, act_dim] (environment units) from obs_horizon raw observations and the
    starting noise."""
    a, d, s = p["arch"], p["arch"]["diffusion"], p["stats"]
    if d["sampler"] != "ddim":
        raise PolicyError("ddpm sampling draws fresh noise at every step: only ddim plans are reproduced")
    if obs.shape[0] != d["obs_horizon"]:
        raise PolicyError("a diffusion plan reads %d observations, got %d" % (d["obs_horizon"], obs.shape[0]))
    hist = ((np.asarray(obs, dtype=np.float64) - s["obs_mean"]) / s["obs_std"]).reshape(-1)
    x = np.asarray(noise, dtype=np.float64).reshape(-1)
    if x.size != a["act_dim"]:
        raise PolicyError("the noise has %d values, the plan %d" % (x.size, a["act_dim"]))
    T, S, c = d["train_steps"], d["sample_steps"], d["clip"]
    r = T // S
    for step in range(S - 1, -1, -1):
        k = step * r
        ab = d["abar"][k]
        ap = d["abar"][k - r] if k - r >= 0 else 1.0
        eps = network_output(p, np.concatenate([hist, x, embed(d["temb"], k)])[None, :])[0]
        x0 = np.clip(eps if d["prediction"] == "sample" else (x - math.sqrt(1 - ab) * eps) / math.sqrt(ab), -c, c)
        e = (x - math.sqrt(ab) * x0) / math.sqrt(1 - ab)
        x = math.sqrt(ap) * x0 + math.sqrt(1 - ap) * e
    A = s["act_offset"].shape[0]
    return s["act_offset"] + s["act_scale"] * np.clip(x, -c, c).reshape(-1, A)


MAX_SIDE = 1024  # NN_MAX_IMAGE_SIDE
LAYER_FIELDS = {"conv": ("out", "kernel", "stride", "pad"), "relu": (), "spatial_softmax": ("out",),
                "flatten": (), "linear": ("out",)}


def _check_encoders(encs):
    """The cameras of arch "encoders", with every layer's output shape computed."""
    if not isinstance(encs, list) or not encs:
        raise PolicyError("arch encoders is not a non-empty list")
    out = []
    for i, e in enumerate(encs):
        if not isinstance(e, dict) or sorted(e) != ["crop", "encoder", "frame", "key"]:
            raise PolicyError("arch encoders[%d] must have exactly key, frame, crop, encoder" % i)
        frame, crop, enc = e["frame"], e["crop"], e["encoder"]
        if not (isinstance(frame, list) and len(frame) == 3 and all(_int(v) and 1 <= v <= MAX_SIDE for v in frame)):
            raise PolicyError("arch encoders[%d] frame is not [H, W, C]" % i)
        if not (isinstance(crop, list) and len(crop) == 2 and all(_int(v) and 1 <= v <= MAX_SIDE for v in crop)):
            raise PolicyError("arch encoders[%d] crop is not [h, w]" % i)
        if crop[0] > frame[0] or crop[1] > frame[1]:
            raise PolicyError("arch encoders[%d] crop %s is larger than the frame %s" % (i, crop, frame))
        if not isinstance(enc, dict) or sorted(enc) != ["input", "layers"]:
            raise PolicyError("arch encoders[%d] encoder must have exactly input, layers" % i)
        if enc["input"] != [frame[2], crop[0], crop[1]]:
            raise PolicyError("arch encoders[%d] input %s is not [C, h, w] of the crop" % (i, enc["input"]))
        shape = tuple(enc["input"])
        layers = []
        for j, l in enumerate(enc["layers"]):
            if not isinstance(l, dict) or l.get("type") not in LAYER_FIELDS:
                raise PolicyError("arch encoders[%d] layer %d has no known type" % (i, j))
            kind = l["type"]
            if sorted(k for k in l if k != "type") != sorted(LAYER_FIELDS[kind]):
                raise PolicyError("arch encoders[%d] layer %d (%s) must have exactly %s" % (i, j, kind, LAYER_FIELDS[kind]))
            if not all(_int(l[k]) and l[k] >= (0 if k == "pad" else 1) for k in LAYER_FIELDS[kind]):
                raise PolicyError("arch encoders[%d] layer %d (%s) has a field that is not a size" % (i, j, kind))
            inp = shape
            if kind == "conv":
                if len(shape) != 3:
                    raise PolicyError("arch encoders[%d] layer %d: conv on a %d-D input" % (i, j, len(shape)))
                k, st, pd = l["kernel"], l["stride"], l["pad"]
                ho, wo = (shape[1] + 2 * pd - k) // st + 1, (shape[2] + 2 * pd - k) // st + 1
                if ho < 1 or wo < 1:
                    raise PolicyError("arch encoders[%d] layer %d: kernel %d does not fit %s" % (i, j, k, shape))
                shape = (l["out"], ho, wo)
            elif kind == "spatial_softmax":
                if len(shape) != 3:
                    raise PolicyError("arch encoders[%d] layer %d: spatial_softmax on a %d-D input" % (i, j, len(shape)))
                shape = (l["out"], 2)
            elif kind == "flatten":
                shape = (int(np.prod(shape)),)
            elif kind == "linear":
                shape = (l["out"],)
            layers.append((kind, l, inp, shape, "%s%d" % (kind, j)))
        out.append({"key": e["key"], "frame": frame, "crop": crop, "layers": layers, "out": int(np.prod(shape))})
    return out


def encoder_shapes(a):
    shapes = {}
    for i, e in enumerate(a["encoders"]):
        for kind, l, inp, outp, name in e["layers"]:
            if kind == "conv":
                shapes["enc%d.%s.weight" % (i, name)] = (l["out"], inp[0], l["kernel"], l["kernel"])
            elif kind == "spatial_softmax":
                shapes["enc%d.%s.weight" % (i, name)] = (l["out"], inp[0], 1, 1)
            elif kind == "linear":
                shapes["enc%d.%s.weight" % (i, name)] = (l["out"], int(np.prod(inp)))
            else:
                continue
            shapes["enc%d.%s.bias" % (i, name)] = (l["out"],)
    return shapes


def encode(p, i, frames):
    """Camera i's features [B, F] from uint8 frames [B, H, W, C]."""
    e, w = p["arch"]["encoders"][i], p["weights"]
    H, W, C = e["frame"]
    h, wd = e["crop"]
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[1:] != (H, W, C):
        raise PolicyError("camera %s: frames %s %s, the policy takes uint8 [B, %d, %d, %d]"
                          % (e["key"], frames.dtype, frames.shape, H, W, C))
    oy, ox = (H - h) // 2, (W - wd) // 2
    x = frames[:, oy:oy + h, ox:ox + wd, :].astype(np.float64).transpose(0, 3, 1, 2) / 255.0
    for kind, l, inp, outp, name in e["layers"]:
        pre = "enc%d.%s." % (i, name)
        if kind == "conv":
            k, st, pd = l["kernel"], l["stride"], l["pad"]
            xp = np.pad(x, ((0, 0), (0, 0), (pd, pd), (pd, pd)))
            win = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(2, 3))[:, :, ::st, ::st]
            win = win[:, :, :outp[1], :outp[2]]  # [B, C, ho, wo, k, k]
            x = np.einsum("bchwij,ocij->bohw", win, w[pre + "weight"]) + w[pre + "bias"][None, :, None, None]
        elif kind == "relu":
            x = np.maximum(x, 0.0)
        elif kind == "spatial_softmax":
            B, Cin, Hm, Wm = x.shape
            m = np.einsum("bchw,kc->bkhw", x, w[pre + "weight"][:, :, 0, 0]) + w[pre + "bias"][None, :, None, None]
            m = m.reshape(B, -1, Hm * Wm)
            m = np.exp(m - m.max(axis=2, keepdims=True))
            m /= m.sum(axis=2, keepdims=True)
            px = np.tile(np.linspace(-1, 1, Wm), Hm)
            py = np.repeat(np.linspace(-1, 1, Hm), Wm)
            x = np.stack([(m * px).sum(axis=2), (m * py).sum(axis=2)], axis=2)  # [B, K, 2]
        elif kind == "flatten":
            x = x.reshape(x.shape[0], -1)
        elif kind == "linear":
            x = x.reshape(x.shape[0], -1) @ w[pre + "weight"].T + w[pre + "bias"]
    return x.reshape(x.shape[0], -1)


def out_dim(a):
    A = a["act_dim"]
    return {"mse": A, "gaussian": 2 * A, "gmm": a["gmm_modes"] * (2 * A + 1)}[a["head"]]


def unet_plan(a):
    """The U-Net as (kind, name, shapes...) steps: its tensors and its forward from one description."""
    u = a["unet"]
    E, k, n, d = u["temb"], u["kernel"], len(u["down_dims"]), u["down_dims"]
    C = a["act_dim"] // u["horizon"]
    D = a["obs_dim"] - a["act_dim"]  # cond: [step features (E) | global cond]
    shapes = {"diffusion_step_encoder.1.weight": (4 * E, E), "diffusion_step_encoder.1.bias": (4 * E,),
              "diffusion_step_encoder.3.weight": (E, 4 * E), "diffusion_step_encoder.3.bias": (E,)}

    def block(P, cin, cout):
        shapes.update({P + ".blocks.0.block.0.weight": (cout, cin, k), P + ".blocks.0.block.0.bias": (cout,),
                       P + ".blocks.0.block.1.weight": (cout,), P + ".blocks.0.block.1.bias": (cout,),
                       P + ".cond_encoder.1.weight": (2 * cout, D), P + ".cond_encoder.1.bias": (2 * cout,),
                       P + ".blocks.1.block.0.weight": (cout, cout, k), P + ".blocks.1.block.0.bias": (cout,),
                       P + ".blocks.1.block.1.weight": (cout,), P + ".blocks.1.block.1.bias": (cout,)})
        if cin != cout:
            shapes.update({P + ".residual_conv.weight": (cout, cin, 1), P + ".residual_conv.bias": (cout,)})
        return ("block", P, cin, cout)

    steps, cin = [], C
    for i in range(n):
        steps += [block("down_modules.%d.0" % i, cin, d[i]), block("down_modules.%d.1" % i, d[i], d[i]),
                  ("skip",)]
        if i < n - 1:
            P = "down_modules.%d.2.conv" % i
            shapes.update({P + ".weight": (d[i], d[i], 3), P + ".bias": (d[i],)})
            steps.append(("down", P))
        cin = d[i]
    steps += [block("mid_modules.0", d[-1], d[-1]), block("mid_modules.1", d[-1], d[-1])]
    for j in range(n - 1):
        i = n - 2 - j
        steps += [("cat", i + 1), block("up_modules.%d.0" % j, 2 * d[i + 1], d[i]),
                  block("up_modules.%d.1" % j, d[i], d[i])]
        P = "up_modules.%d.2.conv" % j
        shapes.update({P + ".weight": (d[i], d[i], 4), P + ".bias": (d[i],)})
        steps.append(("up", P))
    shapes.update({"final_conv.0.block.0.weight": (d[0], d[0], k), "final_conv.0.block.0.bias": (d[0],),
                   "final_conv.0.block.1.weight": (d[0],), "final_conv.0.block.1.bias": (d[0],),
                   "final_conv.1.weight": (C, d[0], 1), "final_conv.1.bias": (C,)})
    return shapes, steps


def _mish(x):
    return x * np.tanh(np.logaddexp(0.0, x))


def _conv1d(x, w, b, stride=1, pad=None):
    """torch.nn.Conv1d on x [Ci, L]: w [Co, Ci, k]."""
    k = w.shape[2]
    pad = k // 2 if pad is None else pad
    xp = np.pad(x, ((0, 0), (pad, pad)))
    Lo = (xp.shape[1] - k) // stride + 1
    cols = np.stack([xp[:, t * stride:t * stride + k] for t in range(Lo)], axis=0)  # [Lo, Ci, k]
    return np.einsum("oik,tik->ot", w, cols) + b[:, None]


def _conv_transpose1d(x, w, b, stride, pad):
    """torch.nn.ConvTranspose1d on x [Ci, L]: w [Ci, Co, k]; y[o, t s - p + j] += x[i, t] w[i, o, j]."""
    Ci, L = x.shape
    k = w.shape[2]
    full = np.zeros((w.shape[1], (L - 1) * stride + k))
    for t in range(L):
        full[:, t * stride:t * stride + k] += np.einsum("i,iok->ok", x[:, t], w)
    return full[:, pad:full.shape[1] - pad] + b[:, None]


def _group_norm(x, g, w, b):
    C, L = x.shape
    z = x.reshape(g, -1)
    z = (z - z.mean(axis=1, keepdims=True)) / np.sqrt(z.var(axis=1, keepdims=True) + 1e-5)
    return z.reshape(C, L) * w[:, None] + b[:, None]


def unet_output(p, row):
    """The U-Net's chunk [act_dim] for one input row [obs_dim] (float64)."""
    a, w = p["arch"], p["weights"]
    u = a["unet"]
    E, T, G = u["temb"], u["horizon"], u["groups"]
    C = a["act_dim"] // T
    co = a["obs_dim"] - a["act_dim"] - E
    x = row[co:co + T * C].reshape(T, C).T  # [C, T]
    emb = row[co + T * C:]
    s = w["diffusion_step_encoder.1.weight"] @ emb + w["diffusion_step_encoder.1.bias"]
    s = w["diffusion_step_encoder.3.weight"] @ _mish(s) + w["diffusion_step_encoder.3.bias"]
    cond = np.concatenate([s, row[:co]])

    def block(P, h, cin, cout):
        out = _mish(_group_norm(_conv1d(h, w[P + ".blocks.0.block.0.weight"], w[P + ".blocks.0.block.0.bias"]), G,
                                w[P + ".blocks.0.block.1.weight"], w[P + ".blocks.0.block.1.bias"]))
        e = w[P + ".cond_encoder.1.weight"] @ _mish(cond) + w[P + ".cond_encoder.1.bias"]
        out = e[:cout, None] * out + e[cout:, None]
        out = _mish(_group_norm(_conv1d(out, w[P + ".blocks.1.block.0.weight"], w[P + ".blocks.1.block.0.bias"]), G,
                                w[P + ".blocks.1.block.1.weight"], w[P + ".blocks.1.block.1.bias"]))
        res = h if cin == cout else _conv1d(h, w[P + ".residual_conv.weight"], w[P + ".residual_conv.bias"])
        return out + res

    skips = []
    for st in unet_plan(a)[1]:
        if st[0] == "block":
            x = block(st[1], x, st[2], st[3])
        elif st[0] == "skip":
            skips.append(x)
        elif st[0] == "down":
            x = _conv1d(x, w[st[1] + ".weight"], w[st[1] + ".bias"], stride=2, pad=1)
        elif st[0] == "cat":
            x = np.concatenate([x, skips[st[1]]], axis=0)
        else:
            x = _conv_transpose1d(x, w[st[1] + ".weight"], w[st[1] + ".bias"], 2, 1)
    x = _mish(_group_norm(_conv1d(x, w["final_conv.0.block.0.weight"], w["final_conv.0.block.0.bias"]), G,
                          w["final_conv.0.block.1.weight"], w["final_conv.0.block.1.bias"]))
    x = _conv1d(x, w["final_conv.1.weight"], w["final_conv.1.bias"])
    return x.T.reshape(-1)


def tensor_shapes(a):
    """Every tensor of the architecture, in the C library's order: name -> shape."""
    if a["unet"]:
        return unet_plan(a)[0]
    shapes = {}
    H = a["rnn_hidden"]
    for k in range(a["rnn_layers"]):
        shapes["lstm%d.weight_ih" % k] = (4 * H, a["obs_dim"] if k == 0 else H)
        shapes["lstm%d.weight_hh" % k] = (4 * H, H)
        shapes["lstm%d.bias_ih" % k] = (4 * H,)
        shapes["lstm%d.bias_hh" % k] = (4 * H,)
    dims = [H if a["rnn_layers"] else a["obs_dim"]] + list(a["hidden"]) + [out_dim(a)]
    for i in range(len(dims) - 1):
        shapes["l%d.weight" % i] = (dims[i + 1], dims[i])
        shapes["l%d.bias" % i] = (dims[i + 1],)
        if a["layer_norm"] and i < len(dims) - 2:
            shapes["ln%d.gain" % i] = (dims[i + 1],)
            shapes["ln%d.bias" % i] = (dims[i + 1],)
    return shapes


def _read(g, group, name, shape):
    if name not in g:
        raise PolicyError("/%s/%s is missing" % (group, name))
    d = g[name]
    if not isinstance(d, h5py.Dataset) or d.dtype.kind != "f":
        raise PolicyError("/%s/%s is not a floating-point dataset" % (group, name))
    if d.shape != tuple(shape):
        raise PolicyError("/%s/%s has shape %s, the architecture needs %s" % (group, name, d.shape, tuple(shape)))
    if d.id.get_space_status() != h5py.h5d.SPACE_STATUS_ALLOCATED:  # declared, never (fully) written
        raise PolicyError("/%s/%s has no data written (or only part of it)" % (group, name))
    v = d[()].astype(np.float64)
    if not np.all(np.isfinite(v)):
        raise PolicyError("/%s/%s has a non-finite value" % (group, name))
    return v


def load(path):
    """Read and check a policy file; returns a dict with arch, keys, dims, stats, weights, attrs."""
    if not h5py.is_hdf5(path):
        raise PolicyError("not an HDF5 file")
    with h5py.File(path, "r") as f:
        fmt = _str_attr(f, "format")
        if fmt != FORMAT:
            raise PolicyError("not a policy file (format %r, expected %r)" % (fmt, FORMAT))
        if "version" not in f.attrs:
            raise PolicyError("attribute 'version' is missing")
        version = f.attrs["version"]
        if not isinstance(version, (int, np.integer)) or int(version) != VERSION:
            raise PolicyError("policy format version %r; this reader reads version %d" % (version, VERSION))
        arch = _check_arch(_json_attr(f, "arch"))
        keys, dims = _json_attr(f, "obs_keys"), _json_attr(f, "obs_dims")
        if not isinstance(keys, list) or not isinstance(dims, list):
            raise PolicyError("obs_keys and obs_dims must be JSON lists")
        if len(keys) != len(dims) or (not keys and not arch["encoders"]):
            raise PolicyError("%d obs_keys but %d obs_dims" % (len(keys), len(dims)))
        if not all(isinstance(k, str) and k for k in keys):
            raise PolicyError("obs_keys are not all key names")
        if not all(_int(d) and d >= 1 for d in dims):
            raise PolicyError("obs_dims are not all sizes")
        feat = sum(e["out"] for e in arch["encoders"])
        dif = arch["diffusion"]
        step_in = arch["obs_dim"]  # a diffusion policy: one of its obs_horizon steps
        if dif and (arch["head"] != "mse" or arch["tanh"] or arch["rnn_layers"]):
            raise PolicyError("diffusion: the denoiser must be an MLP or U-Net with an MSE head without tanh")
        if dif:
            rest = arch["obs_dim"] - arch["act_dim"] - dif["temb"]
            if rest < 1 or rest % dif["obs_horizon"] or arch["act_dim"] % dif["horizon"]:
                raise PolicyError("arch diffusion does not fit the network's %d inputs and %d outputs"
                                  % (arch["obs_dim"], arch["act_dim"]))
            step_in = rest // dif["obs_horizon"]
        if sum(dims) + feat != step_in:
            raise PolicyError("observation keys add up to %d values but the network takes %d besides %d features"
                              % (sum(dims), arch["obs_dim"], feat))
        attrs = {"task": _str_attr(f, "task"), "algo": _str_attr(f, "algo")}
        attrs["info"] = _json_attr(f, "info") if "info" in f.attrs else {}
        if not isinstance(attrs["info"], dict):
            raise PolicyError("attribute 'info' is not a JSON object")
        if "control_hz" not in f.attrs:
            raise PolicyError("attribute 'control_hz' is missing")
        attrs["control_hz"] = float(f.attrs["control_hz"])
        if not (math.isfinite(attrs["control_hz"]) and attrs["control_hz"] >= 0):
            raise PolicyError("control_hz %g is not a rate" % attrs["control_hz"])

        if "normalization" not in f:
            raise PolicyError("group /normalization is missing")
        n = f["normalization"]
        chunk = f.attrs.get("chunk", dif["horizon"] if dif else 1)
        if not isinstance(chunk, (int, np.integer)) or not 1 <= int(chunk) <= 64 or arch["act_dim"] % int(chunk):
            raise PolicyError("attribute 'chunk' (%r) is not 1..64 dividing the network's %d outputs"
                              % (chunk, arch["act_dim"]))
        attrs["chunk"] = int(chunk)
        D, A = step_in - feat, arch["act_dim"] // int(chunk)
        stats = {k: _read(n, "normalization", k, (D,)) for k in ("obs_mean", "obs_std")}
        stats.update({k: _read(n, "normalization", k, (A,)) for k in ("act_offset", "act_scale")})
        for k in ("obs_std", "act_scale"):
            bad = np.nonzero(~(stats[k] > 0))[0]
            if bad.size:
                raise PolicyError("/normalization/%s[%d] = %g, must be > 0" % (k, bad[0], stats[k][bad[0]]))

        if "weights" not in f:
            raise PolicyError("group /weights is missing")
        w = f["weights"]
        shapes = tensor_shapes(arch)
        shapes.update(encoder_shapes(arch))
        weights = {name: _read(w, "weights", name, shape) for name, shape in shapes.items()}
        for name in w:
            if name not in shapes:
                raise PolicyError("/weights/%s is not a tensor of the architecture in 'arch'" % name)
    return {"arch": arch, "keys": keys, "dims": dims, "stats": stats, "weights": weights, "attrs": attrs}


def _activation(name, z):
    if name == "relu":
        return np.maximum(z, 0.0)
    if name == "elu":
        return np.where(z > 0, z, np.expm1(np.minimum(z, 0.0)))
    return np.tanh(z)


def _sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # no overflow for very negative z


def lstm(p, x):
    """The top LSTM layer's h for every step of x [N, obs_dim] (one episode's consecutive steps)."""
    a, w = p["arch"], p["weights"]
    H, L = a["rnn_hidden"], a["rnn_layers"]
    h, c = np.zeros((L, H)), np.zeros((L, H))
    out = np.zeros((x.shape[0], H))
    for t in range(x.shape[0]):
        if t % a["rnn_horizon"] == 0:
            h[:], c[:] = 0.0, 0.0
        inp = x[t]
        for k in range(L):
            z = (inp @ w["lstm%d.weight_ih" % k].T + w["lstm%d.bias_ih" % k] + h[k] @ w["lstm%d.weight_hh" % k].T
                 + w["lstm%d.bias_hh" % k])
            i, f, g, o = _sigmoid(z[:H]), _sigmoid(z[H:2 * H]), np.tanh(z[2 * H:3 * H]), _sigmoid(z[3 * H:])
            c[k] = f * c[k] + i * g
            h[k] = o * np.tanh(c[k])
            inp = h[k]
        out[t] = inp
    return out


def network_output(p, x):
    """MLP output [B, out_dim] for normalized inputs x [B, obs_dim] (float64); a recurrent policy's rows
    are one episode's steps."""
    a, w = p["arch"], p["weights"]
    if a["unet"]:
        return np.stack([unet_output(p, r) for r in x])
    if a["rnn_layers"]:
        x = lstm(p, x)
    n_hidden = len(a["hidden"])
    for i in range(n_hidden):
        z = x @ w["l%d.weight" % i].T + w["l%d.bias" % i]
        if a["layer_norm"]:
            mean = z.mean(axis=1, keepdims=True)
            var = ((z - mean) ** 2).mean(axis=1, keepdims=True)
            z = (z - mean) / np.sqrt(var + LN_EPS) * w["ln%d.gain" % i] + w["ln%d.bias" % i]
        x = _activation(a["activation"], z)
    return x @ w["l%d.weight" % n_hidden].T + w["l%d.bias" % n_hidden]


def net_action(p, o):
    """The head's deterministic action [B, A] from the output o [B, out_dim]."""
    a = p["arch"]
    A = a["act_dim"]
    if a["head"] == "mse":
        return np.tanh(o) if a["tanh"] else o
    if a["head"] == "gaussian":
        return np.tanh(o[:, :A])
    K = a["gmm_modes"]
    means = o[:, : K * A].reshape(-1, K, A)
    best = np.argmax(o[:, 2 * K * A :], axis=1)  # the first of equal maxima, as the C loop
    m = means[np.arange(o.shape[0]), best]
    return np.tanh(m) if a["tanh"] else m


def act(p, obs, frames=()):
    """Environment actions [B, act_dim] (float64) for raw observations obs [B, obs_dim] (the low-dim keys)
    and, for a policy with cameras, each camera's uint8 frames [B, H, W, C] in arch "encoders" order."""
    s = p["stats"]
    x = (np.asarray(obs, dtype=np.float64) - s["obs_mean"]) / s["obs_std"]
    if p["arch"]["encoders"]:
        x = np.concatenate([x] + [encode(p, i, f) for i, f in enumerate(frames)], axis=1)
    A = s["act_offset"].shape[0]  # a chunked policy's first action: the first A of its outputs
    return s["act_offset"] + s["act_scale"] * net_action(p, network_output(p, x))[:, :A]


def _read_obs(path, obs_dim):
    if path.endswith(".npy"):
        obs = np.load(path)
    else:
        obs = np.fromfile(path, dtype="<f4")
        if obs.size % obs_dim:
            raise PolicyError("%s: %d floats is not a multiple of obs_dim %d" % (path, obs.size, obs_dim))
        obs = obs.reshape(-1, obs_dim)
    if obs.ndim != 2 or obs.shape[1] != obs_dim:
        raise PolicyError("%s: observations of shape %s, the policy takes [B, %d]" % (path, obs.shape, obs_dim))
    return obs


def main(argv):
    if len(argv) < 4 and len(argv) != 2:
        sys.stderr.write(__doc__)
        return 2
    path = argv[1]
    try:
        p = load(path)
    except (PolicyError, OSError) as e:
        sys.stderr.write("policy_forward: %s: %s\n" % (path, e))
        return 1
    a = p["arch"]
    summary = "obs_dim=%d act_dim=%d hidden=%s activation=%s layer_norm=%d head=%s tanh=%d" % (
        a["obs_dim"], a["act_dim"], a["hidden"], a["activation"], a["layer_norm"], a["head"], a["tanh"])
    if a["encoders"]:
        summary += " cameras=%s" % ",".join("%s(%dx%d->%dx%d)" % (e["key"], e["frame"][0], e["frame"][1], e["crop"][0],
                                                                  e["crop"][1]) for e in a["encoders"])
    if a["rnn_layers"]:
        summary += " lstm=%dx%d horizon=%d" % (a["rnn_layers"], a["rnn_hidden"], a["rnn_horizon"])
    d = a["diffusion"]
    if d:
        summary += " diffusion=%s(%d obs, %d actions, %d levels, %d steps)" % (
            d["sampler"], d["obs_horizon"], d["horizon"], d["train_steps"], d["sample_steps"])
    if a["unet"]:
        summary += " unet=%s(k%d, %d groups)" % (",".join(map(str, a["unet"]["down_dims"])), a["unet"]["kernel"],
                                                 a["unet"]["groups"])
    if len(argv) >= 4:
        try:
            if d and a["encoders"]:
                raise PolicyError("a diffusion plan with cameras is not reproduced here (low-dim policies only)")
            if d:  # one plan from obs_horizon observations and the starting noise
                obs = _read_obs(argv[2], (a["obs_dim"] - a["act_dim"] - d["temb"]) // d["obs_horizon"])
                if len(argv) != 5:
                    raise PolicyError("a diffusion policy needs the starting noise (NOISE)")
                noise = np.load(argv[4]) if argv[4].endswith(".npy") else np.fromfile(argv[4], dtype="<f4")
                out = diffusion_plan(p, obs, noise)
            else:
                obs = _read_obs(argv[2], a["obs_dim"] - sum(e["out"] for e in a["encoders"]))
                given = dict(arg.split("=", 1) for arg in argv[4:])
                want = [e["key"] for e in a["encoders"]]
                if sorted(given) != sorted(want):
                    raise PolicyError("cameras given %s, the policy reads %s" % (sorted(given), want))
                out = act(p, obs, [np.load(given[k]) for k in want])
        except (PolicyError, OSError, ValueError) as e:
            sys.stderr.write("policy_forward: %s\n" % e)
            return 1
        if argv[3].endswith(".npy"):
            np.save(argv[3], out)
        else:
            out.astype("<f8").tofile(argv[3])
        summary += " B=%d" % obs.shape[0]
    print("policy_forward ok %s keys=%s task=%s algo=%s" % (
        summary, ",".join("%s(%d)" % kd for kd in zip(p["keys"], p["dims"])), p["attrs"]["task"], p["attrs"]["algo"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
