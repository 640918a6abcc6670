/* nn/nn.h -- small float32 networks for behavior cloning and SAC, on OpenBLAS (prefix nn_).
 *
 * Networks are MLPs: [Linear (+LayerNorm) + activation] x hidden layers + Linear output (or a 1-D temporal
 * U-Net, nnUnetArch below), with a head that turns the output into actions and a loss:
 *   MSE       output = action (optionally tanh-bounded); loss = mean squared error over batch and dims
 *             (torch.nn.MSELoss).
 *   GAUSSIAN  tanh-squashed diagonal Gaussian (SAC's actor). Output = [mu (A), raw log-std (A)];
 *             log_std = lo + (hi - lo) * (tanh(raw) + 1) / 2 (a smooth clamp to [lo, hi] that keeps
 *             gradients); a = tanh(mu + std * eps). BC loss = mean NLL of the dataset action clipped to
 *             +-(1 - 1e-6), with the tanh correction log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)).
 *   GMM       robomimic's mixture: K modes; output = [means (K x A), raw std (K x A), logits (K)];
 *             mean = tanh(raw mean) if arch.tanh (robomimic tanh_means); std = softplus(raw) + min_std
 *             (robomimic, min_std 1e-4; softplus computed as max(x,0) + log1p(exp(-|x|))); loss = mean
 *             NLL via log-sum-exp. Deterministic action: mean of the mode with the largest logit.
 *
 * Layout: row-major float32, activations batch-major [B, dim]; Linear weights are [out, in] as
 * torch.nn.Linear (y = x W^T + b). Every matrix product is an OpenBLAS cblas_sgemm.
 *
 * Memory: nn_net_make() allocates parameters, gradients and the Adam moments as one block (four equal
 * sections): a network to train. nn_net_make_acting() allocates the parameters alone (a quarter of
 * that): a network to act (forward, actions, sampling, log-probs, dLoss/dinput), as a loaded policy is;
 * the gradient and Adam entry points refuse it (TK_EINVAL) until nn_net_add_training() gives it the
 * other three sections. nn_net_plan() lays a network out (tensor names, shapes, n_params) without
 * allocating anything, so a file can be checked against it first. nn_work_make() allocates every
 * activation and scratch buffer for up to max_batch rows as one block. Nothing allocates after that
 * (forward, loss, backward, step, sampling). An architecture has at most NN_MAX_PARAMS parameters.
 *
 * Threads and determinism: nn_set_threads(n) sets OpenBLAS's thread count (process-wide). With the same
 * seed, data and thread count, results are bit-identical: OpenBLAS 0.3.21 sgemm splits work over M/N only
 * (never the K reduction) and picks its thread split from the shapes, and every reduction here runs in
 * a fixed order (tests/nn/test_nn.c checks it at 1 and 2 threads). 1 and 2 OpenBLAS threads also gave
 * the same bits for the benchmark MLP, but that is not promised. For training on 2+ cores prefer
 * nn_team_train_step (data-parallel, below): on the 32-256-256-7 MLP it beat OpenBLAS's own threading.
 * Activations ELU and tanh use vectorizable float kernels (within 2 and 3 ulp of libm).
 *
 * Errors: int functions return 0 or a negative TK_E* code with tk_error() set; constructors return
 * NULL with tk_error() set. The work object remembers what the last call computed: nn_backward()
 * after anything other than nn_loss() is TK_EINVAL, and so on.
 *
 * Recurrent networks (BC-RNN, robomimic's best on human data): with arch.rnn_layers > 0 the MLP is
 * preceded by an LSTM (torch.nn.LSTM: gates i, f, g, o; c' = f c + i g; h' = o tanh(c')), rnn_layers
 * layers of rnn_hidden units; the MLP then reads the top layer's h. Trained on sequences (nn_seq_*,
 * every sequence from a zero state, loss over every step), run step by step (nn_rnn_step).
 *
 * Not here: input/output normalization (the trainer does it).
 */
#ifndef NN_H
#define NN_H

#include <stddef.h>
#include <stdint.h>

#include "tk.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NN_MAX_HIDDEN 8         /* hidden layers at most */
#define NN_MAX_DIM 65536        /* any layer width / input / action size at most */
#define NN_MAX_MODES 64         /* GMM modes at most */
#define NN_MAX_RNN_LAYERS 4     /* LSTM layers at most */
#define NN_MAX_RNN_HORIZON 1000 /* training sequence length at most */
/* parameters of a network at most (64 Mi floats: 256 MiB to act, 1 GiB to train; robomimic's largest
 * low-dim networks have under 15 Mi). nn_arch_validate refuses more, naming the tensor that passes it */
#define NN_MAX_PARAMS ((int64_t)1 << 26)
/* weight, bias (+ gain, bias of LayerNorm) per Linear; weight_ih, weight_hh, bias_ih, bias_hh per LSTM; a
 * U-Net's tensors (at most 12 per residual block, 16 blocks, and the step encoder, resampling and final
 * convolutions: under 224) */
#define NN_MAX_TENSORS 256
#define NN_NAME_MAX 48                   /* room for a U-Net's "down_modules.0.0.blocks.0.block.0.weight" */
#define NN_ARCH_FORMAT "demokit.nn_arch" /* "format" key of the JSON form */
#define NN_ARCH_VERSION 1                /* "version" key of the JSON form */

typedef enum { NN_RELU = 0, NN_ELU = 1, NN_TANH = 2 } nnActivation; /* ELU with alpha 1 */

/* clang-format off */
/* A 1-D temporal convolutional U-Net in place of the MLP (Chi et al. 2023, Diffusion Policy's
 * ConditionalUnet1D with cond_predict_scale, i.e. FiLM), a denoiser of action chunks. Its input row
 * [obs_dim] is [global conditioning (obs_dim - act_dim - temb) | sample [horizon, C] time-major, C =
 * act_dim / horizon | sinusoidal step embedding (temb)], its output the chunk [horizon, C] (MSE head).
 * Inside, activations are [B, channels, time] (torch's NCL):
 *   step encoder   Linear(temb, 4 temb) -> Mish -> Linear(4 temb, temb): the step features
 *   cond           [step features | global conditioning] (cond_dim = obs_dim - act_dim)
 *   residual block (in -> out at length L): conv1d(k) -> GroupNorm -> Mish -> FiLM(cond) -> conv1d(k) ->
 *                  GroupNorm -> Mish, plus x (in == out) or a 1x1 conv1d of x; FiLM: Mish(cond) -> Linear(
 *                  cond_dim, 2 out) = [scale | bias], y = scale x + bias per channel
 *   down level i   two blocks (in -> down[i], down[i] -> down[i]), kept as skip i, then (not the last level)
 *                  conv1d(down[i], down[i], 3, stride 2, pad 1): L -> L/2
 *   mid            two blocks down[n-1] -> down[n-1]
 *   up level j     (j = 0..n-2, i = n-2-j) [x | skip i+1] -> block (2 down[i+1] -> down[i]) -> block ->
 *                  ConvTranspose1d(down[i], down[i], 4, stride 2, pad 1): L -> 2L
 *   final          conv1d(down[0], down[0], k) -> GroupNorm -> Mish -> conv1d(down[0], C, 1)
 * Tensor names and shapes are ConditionalUnet1D's state_dict's ("diffusion_step_encoder.1.weight",
 * "down_modules.0.0.blocks.0.block.0.weight" [out, in, k], "up_modules.0.2.conv.weight" [in, out, 4],
 * ...); initialization as torch's defaults (uniform in +-1/sqrt(fan_in); GroupNorm 1 and 0). */
/* clang-format on */
#define NN_UNET_MAX_LEVELS 4
typedef struct {
  int levels;                   /* 0: no U-Net (the MLP); else the number of down levels, 1..4 */
  int down[NN_UNET_MAX_LEVELS]; /* channels of each level (ConditionalUnet1D's down_dims), 1..4096 */
  int kernel;                   /* odd, 1..15 (ConditionalUnet1D's kernel_size) */
  int groups;                   /* GroupNorm groups (n_groups), dividing every level's channels */
  int horizon;                  /* the sample's length; divisible by 2^(levels - 1) */
  int temb;                     /* the step embedding's size at the input's end (even, 2..1024) */
} nnUnetArch;
typedef enum { NN_HEAD_MSE = 0, NN_HEAD_GAUSSIAN = 1, NN_HEAD_GMM = 2 } nnHead;

/* Architecture; everything needed to rebuild a network (saved as JSON next to the weights). */
typedef struct {
  int obs_dim;               /* network input size (observation, or observation+action for a critic) */
  int act_dim;               /* action size A */
  int n_hidden;              /* hidden layers, 0..NN_MAX_HIDDEN */
  int hidden[NN_MAX_HIDDEN]; /* their widths */
  nnActivation activation;   /* of every hidden layer */
  int layer_norm;            /* 1: LayerNorm (eps 1e-5, learnable gain/bias) after each hidden Linear */
  nnHead head;               /* output head */
  int tanh;                  /* MSE: tanh on the output; GMM: tanh on the mode means; GAUSSIAN: ignored */
  int gmm_modes;             /* GMM: K, 1..NN_MAX_MODES (default 5) */
  double gmm_min_std;        /* GMM: std = softplus(raw) + min_std (default 1e-4) */
  double log_std_min;        /* GAUSSIAN: log-std range (default -5, 2) */
  double log_std_max;
  int rnn_layers;  /* 0: a plain MLP; 1..NN_MAX_RNN_LAYERS: an LSTM of that many layers before the MLP */
  int rnn_hidden;  /* LSTM width H (robomimic BC-RNN: 400) */
  int rnn_horizon; /* training sequence length, and the rollout's state-reset period (robomimic: 10) */
  nnUnetArch unet; /* unet.levels > 0: the network is that U-Net (n_hidden 0, MSE head, no tanh or LSTM) */
} nnArch;

/* Defaults: hidden 256,256 ReLU, no LayerNorm, MSE, tanh off, K 5, min_std 1e-4, log-std [-5, 2],
 * no LSTM (rnn_layers 0; rnn_hidden 400 and rnn_horizon 10 for when it is turned on).
 * obs_dim and act_dim are left 0 and must be set. */
void nn_arch_default(nnArch *a);
int nn_arch_validate(const nnArch *a);          /* TK_EINVAL/TK_ERANGE with a message naming the field */
int nn_arch_out_dim(const nnArch *a);           /* MLP output width: A, 2A, or K(2A+1) */
const char *nn_activation_name(nnActivation a); /* "relu", "elu", "tanh" */
const char *nn_head_name(nnHead h);             /* "mse", "gaussian", "gmm" */
/* JSON form: {"format":"demokit.nn_arch","version":1,"obs_dim":..,"act_dim":..,"hidden":[..],
 * "activation":"relu","layer_norm":false,"head":"gmm","tanh":true,"gmm_modes":5,"gmm_min_std":1e-4,
 * "log_std_min":-5,"log_std_max":2} plus "rnn_layers","rnn_hidden","rnn_horizon" when rnn_layers > 0 and
 * "unet":{"down_dims":[64,128,256],"kernel":5,"groups":8,"horizon":16,"temb":32} (exactly those keys) for a
 * U-Net.
 * *json is malloc'd (free()). */
int nn_arch_to_json(const nnArch *a, char **json);
/* Parses and validates; format, version, obs_dim, act_dim, hidden and head are required, the others
 * default as nn_arch_default (rnn_layers absent = 0); unknown keys are errors (they are typos). */
int nn_arch_from_json(const char *json, nnArch *a);

/* A named parameter tensor: views into the network's blocks. */
typedef struct {
  char name[NN_NAME_MAX]; /* "l0.weight", "l0.bias", "ln0.gain", "ln0.bias", ..., "l<n_hidden>.weight";
                             LSTM layer k (first in parameter order): "lstm<k>.weight_ih" [4H, in],
                             "lstm<k>.weight_hh" [4H, H], "lstm<k>.bias_ih" [4H], "lstm<k>.bias_hh" [4H]
                             (torch.nn.LSTM's tensors and gate order i, f, g, o) */
  int ndim;               /* 2 for weights, 1 for vectors, 4 for conv weights, 3 for a U-Net's */
  int64_t shape[4];       /* weights [out, in] (torch nn.Linear layout), vectors [n], conv weights
                             [out, in, kh, kw] (torch nn.Conv2d layout) */
  int64_t numel;
  int64_t offset; /* in floats, into each of params/grads/adam_m/adam_v */
  float *data;    /* params + offset */
  float *grad;    /* grads + offset (NULL: a network made to act) */
} nnTensor;

typedef struct {
  float *w, *b;       /* Linear weight [out, in], bias [out] */
  float *gain, *beta; /* LayerNorm gain, bias [out] (hidden layers with layer_norm only, else NULL) */
  float *dw, *db;     /* their gradients (NULL: a network made to act) */
  float *dgain, *dbeta;
} nnLayer;

typedef struct {
  int in;               /* input width: obs_dim for layer 0, rnn_hidden above */
  float *w_ih, *w_hh;   /* [4H, in], [4H, H] (gates i, f, g, o) */
  float *b_ih, *b_hh;   /* [4H] each */
  float *dw_ih, *dw_hh; /* their gradients */
  float *db_ih, *db_hh;
} nnLstmLayer;

/* One row of the trunk's MLP (built from nnArch by nn_net_plan; the kinds are rows of the layer table,
 * nn/nn_layer.c): linear l, layernorm l, then the activation row (relu, elu, tanh) of hidden layer l, ...,
 * the output linear. */
#define NN_MAX_ROWS (3 * NN_MAX_HIDDEN + 1)
typedef struct {
  int kind;    /* nnLayerKind */
  int layer;   /* its Linear's index l (parameters: net->layer[l]) */
  int in, out; /* widths of a row of its input and output */
  int tensor;  /* its first parameter tensor in net->tensors (weight or gain, then bias), -1: none */
  int fuse;    /* forward: how many of the following rows this row's forward runs in the same pass (a
                  linear's layernorm and activation: 0, 1 or 2; 0 for the fused rows themselves); the
                  backward pass runs every row on its own */
} nnRow;

/* A U-Net as a list of nodes in forward order (nn_unet.c builds it from nnUnetArch): a row of the layer
 * table (conv1d, conv_transpose1d, groupnorm, mish, film, linear) from value `in` to value `out`, or the
 * wiring: add (in + in2), concat (channels of in, then in2), cond ([in | the input's conditioning]). Values
 * are per-sample buffers [channels, length] (val[v] floats a sample) that the work holds with their
 * gradients. */
#define NN_UNET_MAX_NODES 200
#define NN_UNET_MAX_VALS 256
typedef struct {
  int op;           /* nnUnetOp (nn_internal.h) */
  int kind;         /* a row: its nnLayerKind */
  int in, in2, out; /* values; in2: add's and concat's second operand, film's conditioning, else -1 */
  int cin, cout;    /* channels in and out (a linear: widths) */
  int lin, lout;    /* lengths in and out (a linear: 1) */
  int kernel, stride, pad, groups;
  int tensor;  /* its first parameter tensor (weight, then bias), -1: none */
  int scratch; /* a value of its own kept from forward to backward (groupnorm: mean and rstd per
                  group; film: scale and bias), -1: none */
} nnUnetNode;
typedef struct {
  int n_nodes;
  nnUnetNode node[NN_UNET_MAX_NODES];
  int n_vals;
  int64_t val_size[NN_UNET_MAX_VALS]; /* floats per sample */
  int64_t val_off[NN_UNET_MAX_VALS];  /* their offsets per sample (x max_batch in a work) */
  int64_t per_sample;                 /* floats per sample of every value */
  int64_t col, tmp;                   /* floats per sample of the two shared scratch buffers */
  int v_x, v_emb, v_cond, v_y;        /* the sample [C, T], the step embedding, cond, the output [C, T] */
  int cond_obs;                       /* the input's conditioning values (obs_dim - act_dim - temb) */
} nnUnet;

typedef struct {
  nnArch arch;
  nnUnet unet; /* arch.unet.levels > 0: the network (n_rows 0) */
  int n_rows;  /* the MLP as rows of the layer table, in forward order */
  nnRow rows[NN_MAX_ROWS];
  int n_linear;                /* n_hidden + 1 */
  int dims[NN_MAX_HIDDEN + 2]; /* dims[0] = MLP input (obs_dim, or rnn_hidden after an LSTM),
                                  dims[i+1] = width of Linear i's output */
  int out_dim;                 /* dims[n_linear] */
  int max_width;               /* max of dims[] */
  int64_t n_params;            /* floats in each of the four sections */
  float *params;               /* all parameters (n_params) */
  float *grads;                /* gradients, same layout (n_params); NULL: a network made to act */
  float *adam_m, *adam_v;      /* Adam first/second moments, same layout (n_params); NULL with grads */
  int64_t adam_t;              /* Adam steps taken */
  int n_tensors;
  nnTensor tensors[NN_MAX_TENSORS]; /* named views, in parameter order */
  nnLayer layer[NN_MAX_HIDDEN + 1];
  nnLstmLayer lstm[NN_MAX_RNN_LAYERS]; /* arch.rnn_layers of them (their tensors come first) */
  void *block_;                        /* the one allocation (parameters; + training state: nn_net_make) */
  void *train_block_;                  /* training state given later (nn_net_add_training), else NULL */
} nnNet;

/* Activations and scratch for batches of up to max_batch rows (recurrent: max_batch sequences of up to
 * max_T steps, the MLP part sized for max_batch * max_T rows). One per thread using the network. */
typedef struct {
  int max_batch;
  int out_dim;                 /* of the network it was made for (checked on use) */
  int64_t n_params;            /* of the network it was made for (checked on use) */
  int batch;                   /* rows of the last forward */
  int stage;                   /* internal: what the last call computed */
  const float *x;              /* input of the last forward (borrowed: keep it alive until backward) */
  float *y[NN_MAX_ROWS];       /* row i's output [B, rows[i].out] (an in-place row's is its input's; the last
                                  row's is out) */
  float *scratch[NN_MAX_ROWS]; /* row i's own (layernorm: rstd [B]), else NULL */
  struct nnTeam *team;         /* NULL, or the team nn_step trains plain networks with (nn_work_set_team) */
  float *h[NN_MAX_HIDDEN];     /* hidden-layer outputs after activation [B, hidden[l]] */
  float *xhat[NN_MAX_HIDDEN];  /* LayerNorm-normalized pre-activations [B, hidden[l]] (LN only) */
  float *rstd[NN_MAX_HIDDEN];  /* LayerNorm 1/sqrt(var + eps) per row [B] (LN only) */
  float *out;                  /* network output [B, out_dim] */
  float *dout;                 /* dLoss/dout [B, out_dim] */
  float *dbuf[2];              /* backward ping-pong [B, max_width] */
  float *act;                  /* head: last actions [B, A] */
  float *eps;                  /* head: last noise [B, A] */
  float *logp;                 /* head: last per-sample log-probs [B] */
  /* recurrent networks only (NULL otherwise). LSTM caches are time-major: step t of sequence b is row
   * t*B + b; the MLP rows are batch-major (b*T + t) */
  int max_T;                       /* steps per sequence at most (1 for a plain network) */
  int T;                           /* steps of the last nn_seq_forward (0: none) */
  float *xt;                       /* the input, time-major [T*B, obs_dim] */
  float *gates[NN_MAX_RNN_LAYERS]; /* gate activations i, f, g, o per layer [T*B, 4H] */
  float *c[NN_MAX_RNN_LAYERS];     /* cell states [T*B, H] */
  float *tc[NN_MAX_RNN_LAYERS];    /* tanh(c) [T*B, H] */
  float *hs[NN_MAX_RNN_LAYERS];    /* hidden states [T*B, H] */
  float *mlp_in;                   /* the top layer's h, batch-major [B*T, H] (the MLP's input) */
  float *dmlp_in;                  /* dLoss/d mlp_in [B*T, H] */
  float *dgates;                   /* dLoss/d gate pre-activations of one layer [T*B, 4H] */
  float *dh_low;                   /* dLoss/d h of the layer below, time-major [T*B, H] */
  float *dxt;                      /* dLoss/d input, time-major [T*B, obs_dim] (nn_backward_out's dx) */
  float *dh_rec, *dc;              /* BPTT carries [B, H]: dLoss/dh_t through W_hh, dLoss/dc_t through f */
  float *dbias;                    /* column sums of dgates [4H] */
  float *unet;                     /* a U-Net's values, their gradients, scratch (nn_unet.c), else NULL */
  void *block_;
} nnWork;

/* ---- lifecycle and introspection ------------------------------------------------------------ */
/* (Not nn_make/nn_free/nn_init: libnanomsg, which Criterion links, exports nn_free and nn_init, and an
 * executable's definitions would interpose them. Every other nn_ name here is checked against it.) */
/* Validates arch, allocates, initializes like torch.nn.Linear (weights and biases uniform in
 * +-1/sqrt(fan_in), i.e. kaiming_uniform(a=sqrt(5)); LayerNorm gain 1, bias 0) from tk_rng seeded
 * with seed; gradients and Adam state zero. */
nnNet *nn_net_make(const nnArch *arch, uint64_t seed);
/* The same parameters (same initialization from seed) without gradients or Adam state: to act. */
nnNet *nn_net_make_acting(const nnArch *arch, uint64_t seed);
/* 1 if net has gradients and Adam state (nn_net_make, or nn_net_add_training), else 0. */
int nn_net_trainable(const nnNet *net);
/* Give a network made to act its gradients and Adam state (zero, adam_t 0): one allocation of three
 * parameter-sized sections. No-op on a trainable network. */
int nn_net_add_training(nnNet *net);
/* Validate arch and fill *plan with its layout (arch, dims, widths, tensor names/shapes/offsets, n_params)
 * without allocating: every pointer in *plan is NULL. Not a network: never use or free it. */
int nn_net_plan(const nnArch *arch, nnNet *plan);
void nn_net_free(nnNet *net);                /* NULL-safe */
void nn_net_init(nnNet *net, uint64_t seed); /* re-initialize parameters; zero grads and Adam state */
const nnTensor *nn_tensor_find(const nnNet *net, const char *name); /* NULL if none */
/* Copy data into the named tensor after checking its shape. */
int nn_tensor_load(nnNet *net, const char *name, int ndim, const int64_t *shape, const float *data);
int nn_copy_params(nnNet *dst, const nnNet *src);       /* same architecture required */
int nn_polyak(nnNet *dst, const nnNet *src, float tau); /* dst = (1 - tau) dst + tau src (target nets) */
void nn_set_threads(int n);                             /* openblas_set_num_threads(n), n >= 1 */
int nn_get_threads(void);

nnWork *nn_work_make(const nnNet *net, int max_batch);
void nn_work_free(nnWork *w); /* NULL-safe */

/* ---- forward, losses, backward ---------------------------------------------------------------- */
/* MLP forward of x [B, obs_dim]; the output is w->out [B, out_dim]. */
int nn_forward(const nnNet *net, nnWork *w, const float *x, int B);
/* Forward and the head's loss against dataset actions y [B, A] (mean over the batch); dLoss/dout is
 * kept in w->dout for nn_backward. A non-finite loss is returned with TK_ERANGE. */
int nn_loss(const nnNet *net, nnWork *w, const float *x, const float *y, int B, float *loss);
/* Backpropagate the last nn_loss: gradients ADD to net->grads (call nn_zero_grad first). */
int nn_backward(nnNet *net, nnWork *w);
/* Backpropagate a given dLoss/dout [B, out_dim] after nn_forward (or any call that ran it): parameter
 * gradients are added if param_grads, dLoss/dx [B, obs_dim] is written to dx if not NULL (a critic's
 * dQ/daction for the actor update; a camera encoder's input gradient). A recurrent network: after
 * nn_seq_forward/nn_seq_loss of B sequences of T steps, dout and dx are [B*T, ...] (row b*T + t),
 * through time; param_grads must be 1 (BPTT computes them on the way). */
int nn_backward_out(nnNet *net, nnWork *w, const float *dout, float *dx, int param_grads);

/* Deterministic actions [B, A]: MSE output (tanh'd if arch.tanh), GAUSSIAN tanh(mu), GMM the mean of
 * the mode with the largest logit. */
int nn_act(const nnNet *net, nnWork *w, const float *x, int B, float *act);
/* Sampled actions: GAUSSIAN tanh(mu + std eps); GMM a mode drawn from softmax(logits), then
 * mean + std eps (no squashing, as robomimic); MSE has no noise (same as nn_act). */
int nn_sample(const nnNet *net, nnWork *w, const float *x, int B, tkRng *rng, float *act);
/* Per-sample log-density of actions a [B, A] (GAUSSIAN with the tanh correction and a clipped to
 * +-(1-1e-6); GMM mixture density). TK_EINVAL for the MSE head. */
int nn_log_prob(const nnNet *net, nnWork *w, const float *x, const float *a, int B, float *logp);

/* ---- SAC: tanh-Gaussian reparameterized sampling ---------------------------------------------- */
/* a = tanh(mu + std eps) for given noise eps [B, A]; act [B, A] and logp [B] out (either may be NULL;
 * w->act and w->logp hold them too). */
int nn_gauss_sample(const nnNet *net, nnWork *w, const float *x, int B, const float *eps, float *act,
                    float *logp);
/* After nn_gauss_sample: given dLoss/dact [B, A] and dLoss/dlogp [B] per sample (either may be NULL
 * for zero; no averaging is applied -- pass 1/B factors yourself), backpropagate through the
 * reparameterized sample and ADD the parameter gradients. */
int nn_gauss_backward(nnNet *net, nnWork *w, const float *dact, const float *dlogp);

/* ---- optimizer ------------------------------------------------------------------------------- */
typedef struct {
  double lr;           /* 1e-4 (robomimic BC) */
  double beta1, beta2; /* 0.9, 0.999 */
  double eps;          /* 1e-8 */
  double weight_decay; /* 0; decoupled (AdamW, torch.optim.AdamW formula p -= lr*wd*p), weight matrices only
                          (Linear and LSTM weights; not biases, not LayerNorm) */
  double clip_norm;    /* 0 = off; else global-norm clipping as torch.nn.utils.clip_grad_norm_ */
} nnAdamOpts;
void nn_adam_default(nnAdamOpts *o);
void nn_zero_grad(nnNet *net);
double nn_grad_norm(const nnNet *net);            /* global L2 norm of all gradients */
double nn_clip_grad(nnNet *net, double max_norm); /* scale by max_norm/(norm+1e-6) if norm > max_norm;
                                                     returns the norm before clipping */
/* One Adam step from net->grads (clipping first if o->clip_norm > 0; *grad_norm gets the pre-clip
 * norm if not NULL). Bias-corrected exactly as torch.optim.Adam/AdamW. */
int nn_adam_step(nnNet *net, const nnAdamOpts *o, double *grad_norm);
void nn_adam_reset(nnNet *net); /* zero moments and step count */
/* zero_grad + loss + backward + (clip +) Adam step: one BC training step. */
int nn_train_step(nnNet *net, nnWork *w, const nnAdamOpts *o, const float *x, const float *y, int B,
                  float *loss, double *grad_norm);

/* ---- recurrent networks (arch.rnn_layers > 0) ------------------------------------------------ */
/* Work for B sequences of up to T steps (B*T MLP rows plus the LSTM's per-step caches). nn_work_make on
 * a recurrent network is nn_work_make_seq(net, max_batch, 1). The plain nn_forward/nn_loss/nn_act/
 * nn_sample/nn_log_prob/nn_gauss_* and nn_team_* refuse a recurrent network (TK_EINVAL); nn_seq_* and
 * nn_rnn_step refuse a plain one. */
nnWork *nn_work_make_seq(const nnNet *net, int max_batch, int max_T);
/* B sequences x [B, T, obs_dim] (row b*T + t), each from a zero LSTM state; the MLP output for every
 * step is w->out [B*T, out_dim] in the same row order. */
int nn_seq_forward(const nnNet *net, nnWork *w, const float *x, int B, int T);
/* Forward and the head's loss against y [B, T, A], the mean over all B*T steps (as nn_loss over B*T
 * rows); nn_backward then backpropagates through time. */
int nn_seq_loss(const nnNet *net, nnWork *w, const float *x, const float *y, int B, int T, float *loss);
/* Deterministic actions [B*T, A] for every step (as nn_act). */
int nn_seq_act(const nnNet *net, nnWork *w, const float *x, int B, int T, float *act);
/* zero_grad + seq loss + backward + (clip +) Adam step. */
int nn_seq_train_step(nnNet *net, nnWork *w, const nnAdamOpts *o, const float *x, const float *y, int B,
                      int T, float *loss, double *grad_norm);
/* Floats of LSTM state for B rows: rnn_layers x (h, c) x B x rnn_hidden. All zeros is the start state. */
int64_t nn_rnn_state_size(const nnNet *net, int B);
/* One step for B rows: x [B, obs_dim], state in/out (nn_rnn_state_size floats), deterministic actions
 * act [B, A]. Stepping T times from a zero state gives nn_seq_act's actions (within float rounding). */
int nn_rnn_step(const nnNet *net, nnWork *w, float *state, const float *x, int B, float *act);

/* ---- data-parallel training step ------------------------------------------------------------ */
/* A team of `threads` threads (the caller plus threads-1 workers it starts) for nn_team_train_step:
 * the batch is split into row blocks, each thread runs forward, loss and backward of its block with
 * its own work and gradient block, the gradients are summed in a fixed order (thread 0 + 1 + ...),
 * and the Adam update is split by parameter ranges. OpenBLAS must run single-threaded inside the team
 * (nn_team_make calls nn_set_threads(1)); on small layers this beats OpenBLAS's own threading (see
 * bench/bc_bench.c). Same seed, data and team size -> bit-identical results; a different team size
 * sums in another order (a 1-thread team equals nn_train_step bit for bit). Workers spin for 0.2 ms
 * after a step, then sleep. A team serves networks of the architecture it was made for, one call at
 * a time; its workers hold the last step's activations (nothing to read from them). */
typedef struct nnTeam nnTeam;
nnTeam *nn_team_make(const nnNet *net, int max_batch, int threads);
void nn_team_free(nnTeam *t); /* joins the workers; NULL-safe */
int nn_team_threads(const nnTeam *t);
/* Same contract as nn_train_step. */
int nn_team_train_step(nnNet *net, nnTeam *t, const nnAdamOpts *o, const float *x, const float *y, int B,
                       float *loss, double *grad_norm);

/* ---- one entry point to train, one to act, over every trunk --------------------------------------- */
/* A plain network (B rows), a chunked one (the same: its A is k actions) and a recurrent one (B
 * sequences of T steps) train through nn_step and act through nn_run; the calls above are kept and give
 * the same bits (nn_step and nn_run call the same code).
 * nn_work_set_team: nn_step trains a plain network on this work's batch with team t (data-parallel, as
 * nn_team_train_step; its results, bit for bit); NULL detaches. The team must be made for the work's
 * network (checked on use, as the work). The work does not own it: free the team after the last step. */
int nn_work_set_team(nnWork *w, nnTeam *t);
/* One training step: zero_grad + loss + backward + (clip +) Adam on x [B, T, obs_dim] against
 * y [B, T, A] (row b*T + t). A plain network takes T = 1 (B rows: nn_train_step, or nn_team_train_step
 * with the work's team); a recurrent one B sequences of T <= the work's max_T steps, each from a zero
 * state, with backpropagation through time (nn_seq_train_step). */
int nn_step(nnNet *net, nnWork *w, const nnAdamOpts *o, const float *x, const float *y, int B, int T,
            float *loss, double *grad_norm);
/* Deterministic actions act [B, T, A] for x [B, T, obs_dim] (row b*T + t). state is the episode's:
 * nn_rnn_state_size(net, B) floats, zero at its start (0 floats for a plain network: state is ignored).
 *   plain network: B*T independent rows (nn_act);
 *   recurrent, state NULL: each of the B sequences from a zero state (nn_seq_act);
 *   recurrent, state: T steps continuing from it, the state updated in place (nn_rnn_step T times; with
 *   B > 1, T <= the work's max_T). */
int nn_run(const nnNet *net, nnWork *w, float *state, const float *x, int B, int T, float *act);

/* ---- image encoders: layers as rows of a table ------------------------------------------------- */
/* clang-format off */
/* An encoder maps a batch of images x [B, C, H, W] (float32, NCHW: torch's layout, values as given:
 * the caller normalizes) to features [B, F] through a list of layers. Each layer kind is one row of a
 * table (nn_layer_kind_name / nn_layer.c): its JSON name and fields, the output shape for an input
 * shape, its parameter tensors, forward and backward. Per-sample shapes have any rank (nnShape).
 * Kinds:
 *   conv             torch.nn.Conv2d(C, out, kernel, stride, pad) with bias: weight [out, C, k, k], bias [out]
 *   relu             elementwise max(x, 0), any shape
 *   spatial_softmax  robomimic's SpatialSoftmax: a 1x1 conv C -> out keypoints (weight [out, C, 1, 1],
 *                    bias [out]), softmax over the H*W positions of each keypoint map (temperature 1),
 *                    expected (x, y) with x = linspace(-1, 1, W) over columns, y = linspace(-1, 1, H)
 *                    over rows; output [out, 2] interleaved (x0, y0, x1, y1, ...) as robomimic's
 *                    keypoints (torch_vision_bc_baseline.py concatenates [x0.., y0..] instead: a linear
 *                    layer after it sees its inputs permuted)
 *   flatten          any shape -> [numel] (a view; no work)
 *   linear           torch.nn.Linear(numel(in), out): weight [out, in], bias [out]; input flattened
 * Tensor names: "<kind><i>.weight" / "<kind><i>.bias" with i the layer's position in the list (conv0,
 * conv2, spatial_softmax8, linear9, ...). Initialization as torch's defaults (weights and biases
 * uniform in +-1/sqrt(fan_in), fan_in = in * kh * kw), from tk_rng seeded with seed.
 * Memory as nnNet: parameters, gradients and Adam moments in one block (acting encoders: parameters
 * only); nn_enc_work_make allocates every activation for up to max_batch images; the convolutions run
 * on oneDNN (its primitives for a batch size are made on the first call with that size and kept in
 * the work: at most NN_ENC_MAX_BATCH_SIZES sizes per work; a call with one more size is refused with
 * TK_ERANGE, nothing is evicted) single-threaded per work: each call sets omp_set_num_threads(1) in the
 * calling thread for its duration (the caller's setting is restored); a thread per work; threads share
 * a batch by rows, each backward into its own gradient block, which the caller sums into e->grads in a
 * fixed order. Parameters stay in torch's layouts; activations between convolutions are kept in the
 * layout oneDNN chose.
 * Same seed, data and batch split -> bit-identical results. */
/* clang-format on */
#define NN_MAX_ENC_LAYERS 16
#define NN_MAX_ENC_TENSORS (2 * NN_MAX_ENC_LAYERS)
#define NN_ENC_MAX_BATCH_SIZES 4
#define NN_MAX_IMAGE_SIDE 1024 /* image height/width at most */

typedef struct {
  int ndim;     /* 1..4 */
  int64_t d[4]; /* per sample (the batch dimension is not included) */
} nnShape;
int64_t nn_shape_numel(const nnShape *s);

typedef enum {
  NN_LAYER_CONV = 0,
  NN_LAYER_RELU = 1,
  NN_LAYER_SPATIAL_SOFTMAX = 2,
  NN_LAYER_FLATTEN = 3,
  NN_LAYER_LINEAR = 4,
  NN_LAYER_LAYERNORM = 5, /* the trunk's rows only (an encoder refuses them, naming the layer) */
  NN_LAYER_ELU = 6,
  NN_LAYER_TANH = 7,
  /* a U-Net's rows only (nnUnet; an encoder refuses them), on [B, channels, length] */
  NN_LAYER_CONV1D = 8,           /* torch.nn.Conv1d(in, out, k, stride, pad): weight [out, in, k], bias */
  NN_LAYER_CONV_TRANSPOSE1D = 9, /* torch.nn.ConvTranspose1d(in, out, k, stride, pad): weight [in, out, k] */
  NN_LAYER_GROUPNORM = 10,       /* torch.nn.GroupNorm(groups, C), eps 1e-5: weight, bias [C] */
  NN_LAYER_MISH = 11,            /* x tanh(softplus(x)) (torch.nn.Mish) */
  NN_LAYER_FILM = 12,            /* Mish(cond) -> Linear(cond_dim, 2C) = [scale | bias]; scale x + bias */
} nnLayerKind;
/* "conv", "relu", "spatial_softmax", "flatten", "linear", "layernorm", "elu", "tanh", "conv1d",
 * "conv_transpose1d", "groupnorm", "mish", "film" */
const char *nn_layer_kind_name(nnLayerKind k);

typedef struct {
  nnLayerKind kind;
  int out;    /* conv: output channels; spatial_softmax: keypoints; linear: output width; else 0 */
  int kernel; /* conv: square kernel size; else 0 */
  int stride; /* conv: >= 1; else 0 */
  int pad;    /* conv: zero padding on every side, >= 0; else 0 */
} nnLayerSpec;

typedef struct {
  int channels, height, width; /* input image [C, H, W] */
  int nlayers;
  nnLayerSpec layer[NN_MAX_ENC_LAYERS];
} nnEncArch;

/* robomimic's recipe scaled to a CPU (torch_vision_bc_baseline.py's encoder): conv 3->32 k3 s2, relu,
 * conv 32->32 k3 s1, relu, conv 32->64 k3 s2, relu, conv 64->64 k3 s1, relu, spatial_softmax 32,
 * linear 64; for C x H x W input. width scales the conv channels (32 -> width, 64 -> 2*width). */
void nn_enc_arch_default(nnEncArch *a, int channels, int height, int width_px, int width);
/* TK_EINVAL/TK_ERANGE with a message naming the layer and the field: shapes that do not fit (a kernel
 * larger than its padded input, a spatial_softmax on something that is not [C, H, W], ...), sizes out of
 * range, more than NN_MAX_PARAMS parameters. */
int nn_enc_arch_validate(const nnEncArch *a);
/* Per-sample output shape of layer i's input (i = 0) or of layer i-1's output: shapes[0..nlayers]. */
int nn_enc_arch_shapes(const nnEncArch *a, nnShape *shapes);
int nn_enc_out_dim(const nnEncArch *a); /* numel of the last layer's output; < 0 if invalid */
/* JSON form: {"input":[C,H,W],"layers":[{"type":"conv","out":32,"kernel":3,"stride":2,"pad":0},
 * {"type":"relu"},{"type":"spatial_softmax","out":32},{"type":"flatten"},{"type":"linear","out":64}]}.
 * Each row of the layer table names its fields; a field another kind has, an unknown key or a missing
 * one is an error naming it. *json is malloc'd. */
int nn_enc_arch_to_json(const nnEncArch *a, char **json);
int nn_enc_arch_from_json(const char *json, nnEncArch *a);

typedef struct {
  nnEncArch arch;
  nnShape shape[NN_MAX_ENC_LAYERS + 1]; /* per-sample shapes: [0] input, [i+1] layer i's output */
  int out_dim;
  int64_t n_params;
  float *params, *grads, *adam_m, *adam_v; /* as nnNet (grads..: NULL when made to act) */
  int64_t adam_t;
  int n_tensors;
  nnTensor tensors[NN_MAX_ENC_TENSORS]; /* named views, in layer order (weight, then bias) */
  void *block_;
  void *train_block_;
} nnEnc;

nnEnc *nn_enc_make(const nnEncArch *a, uint64_t seed);        /* to train */
nnEnc *nn_enc_make_acting(const nnEncArch *a, uint64_t seed); /* parameters only */
int nn_enc_add_training(nnEnc *e);
/* Validate and lay out (tensor names, shapes, n_params) without allocating: every pointer NULL. */
int nn_enc_plan(const nnEncArch *a, nnEnc *plan);
void nn_enc_free(nnEnc *e);                                           /* NULL-safe */
const nnTensor *nn_enc_tensor_find(const nnEnc *e, const char *name); /* NULL if none */
int nn_enc_copy_params(nnEnc *dst, const nnEnc *src);                 /* same architecture */

typedef struct nnEncWork nnEncWork;
nnEncWork *nn_enc_work_make(const nnEnc *e, int max_batch);
void nn_enc_work_free(nnEncWork *w); /* NULL-safe */
/* Forward of x [B, C, H, W] (borrowed until the backward pass); features [B, out_dim] written to feat. */
int nn_enc_forward(const nnEnc *e, nnEncWork *w, const float *x, int B, float *feat);
/* Backward of the last forward from dLoss/dfeat [B, out_dim]: parameter gradients into grads (a block laid
 * out as e->grads, NULL = e->grads), added if accumulate else overwritten. The input gets no gradient. */
int nn_enc_backward(const nnEnc *e, nnEncWork *w, const float *dfeat, float *grads, int accumulate);
/* One Adam step of the encoder from e->grads (as nn_adam_step; weight decay on conv and linear weights).
 * gscale multiplies the gradients first (global-norm clipping across networks: the caller computes the
 * norm with nn_enc_grad_sq); o->clip_norm is not applied here. */
int nn_enc_adam_step(nnEnc *e, const nnAdamOpts *o, float gscale);
double nn_enc_grad_sq(const nnEnc *e); /* sum of squared gradients */
void nn_enc_zero_grad(nnEnc *e);

/* Images for an encoder: uint8 frames [H, W, C] (HWC, as datasets and cameras store them) -> float
 * [C, ch, cw] / 255 of the crop at (oy, ox). Unchecked: the caller keeps the crop inside the frame. */
void nn_image_crop(const uint8_t *hwc, int H, int W, int C, int oy, int ox, int ch, int cw, float *chw);

#ifdef __cplusplus
}
#endif
#endif
