/* nn/nn_internal.h -- shared between the nn_*.c files only. */
#ifndef NN_INTERNAL_H
#define NN_INTERNAL_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include <oneapi/dnnl/dnnl.h>

#include "nn.h"

/* what the work object holds after the last call (nnWork.stage) */
enum {
  NN_STAGE_NONE = 0,    /* nothing valid */
  NN_STAGE_FORWARD = 1, /* activations of a forward pass */
  NN_STAGE_LOSS = 2,    /* activations + dLoss/dout in w->dout */
  NN_STAGE_SAMPLE = 3,  /* activations + w->act/w->eps of a tanh-Gaussian sample */
};

#define NN_LN_EPS 1e-5f
#define NN_ACT_CLIP 0.999999 /* dataset actions clipped to +-(1-1e-6) for tanh-Gaussian log-probs */
#define NN_ALIGN 16          /* floats: every buffer starts on a 64-byte boundary */

static inline int64_t nn_round_up(int64_t n) { return (n + NN_ALIGN - 1) / NN_ALIGN * NN_ALIGN; }

/* Hot elementwise loops get an AVX2 clone picked at load time (GCC function multi-versioning); the
 * build stays baseline x86-64. Same results either way: no FMA contraction (ISO C mode), no
 * reassociation. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#define NN_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define NN_CLONES
#endif

/* ---- the activations' float kernels (inline, so the elementwise loops vectorize) ---------------- */

/* expm1 for x <= 0 in plain float arithmetic, so the activation loops vectorize (libm's expm1f/tanhf
 * are scalar calls that made an ELU or tanh step 2.5x a ReLU step). x = n ln2 + r with |r| <= ln2/2
 * (Cody-Waite split of ln2), expm1(r) by its Taylor polynomial to r^7 (truncation < 1e-8 relative),
 * expm1(x) = 2^n expm1(r) + (2^n - 1); within 2 ulp of expm1 over [-87, 0], -1 below (checked in
 * tests/nn/test_nn.c). Selects are done on the bits: float selects feeding a float->int conversion
 * keep GCC 12 from vectorizing the AVX2 clone. */
typedef union {
  float f;
  int32_t i;
  uint32_t u;
} nnBits;

static inline float nn_expm1_neg_inline(float x) {
  nnBits in = {.f = x}, c = in;
  uint32_t nan = -(uint32_t)((in.u & 0x7fffffffu) > 0x7f800000u); /* all ones for a NaN */
  c.u = c.u > 0xC2AE0000u ? 0xC2AE0000u : c.u; /* x < -87 (bits larger for x <= 0) -> -87 */
  c.u = c.u < 0x80000000u ? 0u : c.u;          /* x >= +0 -> 0 (outside the domain) */
  x = c.f;
  int32_t n = (int32_t)(x * 1.44269504f - 0.5f); /* truncation toward 0 of a negative: nearest */
  float fn = (float)n;
  float r = (x - fn * 0.693359375f) - fn * -2.12194440e-4f;
  float p =
      r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 +
                                                                    r * (1.0f / 720 + r * (1.0f / 5040)))))));
  nnBits sc = {.u = (uint32_t)(n + 127) << 23}; /* 2^n, n >= -126 */
  nnBits res = {.f = sc.f * p + (sc.f - 1.0f)};
  res.u = (res.u & ~nan) | (in.u & nan); /* NaN in, NaN out */
  return res.f;
}

/* tanh(x) = -t / (t + 2) with t = expm1(-2|x|), sign restored: accurate for small |x| too */
static inline float nn_tanh_inline(float x) {
  float t = nn_expm1_neg_inline(-2.0f * fabsf(x));
  return copysignf(-t / (t + 2.0f), x);
}

/* logistic sigmoid 1/(1 + e^-x) = (1 + tanh(x/2)) / 2: no overflow, 0 and 1 at the ends, NaN kept */
static inline float nn_sigmoid_inline(float x) { return 0.5f + 0.5f * nn_tanh_inline(0.5f * x); }

/* the same, out of line (the accuracy tests) */
float nn_expm1_neg(float x); /* expm1 for x <= 0 */
float nn_tanh(float x);
float nn_sigmoid(float x);

/* ---- shared internals ------------------------------------------------------------------------ */

/* cJSON_Parse of a whole string; NULL with TK_EFORMAT "<what>: invalid JSON near byte N" */
struct cJSON *nn_json_parse(const char *json, const char *what);
int nn_check_batch(const nnNet *net, const nnWork *w, const float *x, int B);
/* TK_EINVAL naming fn if net was made to act (no gradients or Adam state), else 0 */
int nn_need_training(const nnNet *net, const char *fn);
/* "[a]", "[a, b]" .. "[a, b, c, d]" (ranks 1..4), else "(n dims)" */
void nn_shape_str(int ndim, const int64_t *shape, char *buf, size_t n);
int nn_check_work(const nnNet *net, const nnWork *w);
/* TK_EINVAL naming fn if net is recurrent (the plain MLP entry points refuse it), else 0 */
int nn_refuse_rnn(const nnNet *net, const char *fn);
/* MLP forward of in [B, dims[0]] (no checks); w->x = in, w->batch = B, stage FORWARD */
void nn_mlp_forward(const nnNet *net, nnWork *w, const float *in, int B);
/* deterministic actions [B, A] from the output rows in w->out (nn_act's rule) */
void nn_head_act(const nnNet *net, const nnWork *w, int B, float *act);
/* The head's loss on the rows of the last forward against y [B, A]: returns the SUM of per-row losses
 * and writes dLoss/dout scaled for a mean over B_total rows (a row block of a larger batch). */
double nn_head_loss(const nnNet *net, nnWork *w, const float *y, int B, int B_total);
/* Backward from dout [B, out_dim] through the last forward in w. Parameter gradients go to grads (a
 * block laid out as net->grads; NULL = none), added if accumulate else overwritten; dx [B, obs_dim]
 * gets dLoss/dinput if not NULL. */
void nn_mlp_backward(const nnNet *net, nnWork *w, const float *dout, float *dx, float *grads, int accumulate);
/* Backpropagation through time of the last nn_seq_loss (w->dout): the MLP, then the LSTM layers.
 * Gradients go to net->grads, added if accumulate else overwritten. */
void nn_seq_backward(nnNet *net, nnWork *w, int accumulate, float *dx); /* dx [B*T, obs_dim] or NULL */
/* The mean head loss over the N rows of the last forward against y [N, A]: *loss (if not NULL), dLoss/dout
 * kept for the backward pass (stage LOSS); TK_ERANGE naming fn when it is not finite. */
int nn_mean_loss(const nnNet *net, nnWork *w, const float *y, int N, float *loss, const char *fn);
/* Backpropagate the last loss (the MLP's, or the sequence's through time) into net->grads, added if
 * accumulate else overwritten. */
void nn_loss_backward(nnNet *net, nnWork *w, int accumulate);
/* The rest of a training step after the forward pass: mean loss, backward (overwriting the gradients),
 * (clip +) Adam. */
int nn_fit_rows(nnNet *net, nnWork *w, const nnAdamOpts *o, const float *y, int N, float *loss,
                double *grad_norm, const char *fn);
/* the training steps behind nn_step and the old entry points, errors naming fn */
int nn_seq_train(nnNet *net, nnWork *w, const nnAdamOpts *o, const float *x, const float *y, int B, int T,
                 float *loss, double *grad_norm, const char *fn);
int nn_team_step(nnNet *net, nnTeam *t, const nnAdamOpts *o, const float *x, const float *y, int B,
                 float *loss, double *grad_norm, const char *fn);
/* Work with the LSTM buffers for max_batch sequences of max_T steps (recurrent networks) */
nnWork *nn_work_alloc(const nnNet *net, int max_batch, int max_T);

/* Adam constants of the next step (step adam_t + 1; the caller increments adam_t after applying it)
 * and the update of params [lo, hi) */
typedef struct {
  float b1, b2, step, ibc2s, eps, decay;
} nnAdamK;
int nn_adam_prepare(nnNet *net, const nnAdamOpts *o, nnAdamK *k);
int nn_adam_prepare_t(int64_t adam_t, const nnAdamOpts *o, nnAdamK *k); /* the same from the step count */
/* g2 (NULL or a block laid out as grads): update with grads + g2 (unscaled) and store that sum in grads */
void nn_adam_span(nnNet *net, const nnAdamK *k, int64_t lo, int64_t hi, float gscale, const float *g2);
/* what an Adam step updates, whichever object owns it (nnNet, nnEnc): the tensor table (offsets, ranks:
 * rank >= 2 gets the weight decay) and the four parameter-sized sections */
typedef struct {
  const nnTensor *tensors;
  int n_tensors;
  float *params, *grads, *m, *v;
} nnAdamBlock;
void nn_adam_block_span(const nnAdamBlock *b, const nnAdamK *k, int64_t lo, int64_t hi, float gscale,
                        const float *g2);
int nn_adam_check(const nnAdamOpts *o);
double nn_sum_sq(const float *g, int64_t n);

/* ---- image encoders (nn_layer.c: the layer table; nn_conv.c: oneDNN; nn_enc.c: the encoder) ---------- */

/* A oneDNN primitive (or reorder) with its arguments; the memories' data handles are set before each run
 * (nn_dnn_set), so one primitive serves whatever buffers a call brings. */
typedef struct {
  dnnl_primitive_t p; /* NULL: not needed (a reorder between equal layouts) */
  int n;
  dnnl_exec_arg_t a[8];
  void *scratch; /* its scratchpad (user mode: no allocation while it runs) */
} nnDnnOp;

/* one activation's layout for one batch size: [B, per-sample shape] plain (NCHW, row-major) or the blocked
 * layout a convolution chose (channels in blocks of 8 or 16, padded with zeros) */
typedef struct {
  int plain;
  dnnl_memory_desc_t md; /* 4-D [B, C, H, W] for rank-3 shapes (plain: nchw); unused for other ranks */
  int64_t floats;        /* floats the buffer holds at this batch (blocked: with the channel padding) */
} nnActLayout;

typedef struct nnConv nnConv; /* nn_conv.c: one convolution's primitives for one batch size */

/* everything made for one batch size, on its first call */
typedef struct {
  int B;
  nnActLayout act[NN_MAX_ENC_LAYERS + 1];    /* [0] the input (plain), [i+1] layer i's output */
  nnConv *conv[NN_MAX_ENC_LAYERS];           /* conv layers' primitives (NULL for other kinds) */
  nnDnnOp to_plain[NN_MAX_ENC_LAYERS + 1];   /* act i blocked -> plain (a plain-input layer's input, or
                                                the encoder's output) */
  nnDnnOp from_plain[NN_MAX_ENC_LAYERS + 1]; /* plain -> act i blocked (the gradient, backward) */
} nnEncSize;

struct nnEncWork {
  int max_batch;
  int64_t n_params; /* of the encoder it was made for (checked on use, with the arch) */
  nnEncArch arch;
  dnnl_engine_t eng; /* this work's CPU engine and in-order stream */
  dnnl_stream_t st;
  dnnl_status_t err; /* the first oneDNN failure of the current call (dnnl_success: none) */
  int nsizes;        /* batch sizes made so far (at most NN_ENC_MAX_BATCH_SIZES) */
  nnEncSize size[NN_ENC_MAX_BATCH_SIZES];
  int stage;                          /* NN_STAGE_NONE or NN_STAGE_FORWARD */
  nnEncSize *cur;                     /* the batch size of the last forward */
  int B;                              /* rows of the last forward */
  const float *in[NN_MAX_ENC_LAYERS]; /* layer i's input in the last forward (plain if its row wants it) */
  float *out[NN_MAX_ENC_LAYERS];      /* layer i's output in the last forward */
  /* buffers, sized for max_batch (blocked layouts with channels padded to 16) */
  float *obuf[NN_MAX_ENC_LAYERS];    /* layer i's own output (NULL: an in-place row after layer 0) */
  float *pin[NN_MAX_ENC_LAYERS];     /* a plain copy of layer i's input when it may arrive blocked */
  float *scratch[NN_MAX_ENC_LAYERS]; /* the row's own (spatial softmax: the softmax maps) */
  float *g[2];                       /* backward ping-pong: dLoss/d activation */
  float *gplain;                     /* a plain-input layer's dLoss/dinput before its reorder to blocked */
  float *tmpw;                       /* a weight gradient to add when accumulating */
  void *block_;
};

/* The arguments of one layer's forward or backward. x, dx are in act[i]'s layout (plain when the row
 * asks for plain input), y, dy in act[i+1]'s. */
typedef struct {
  const nnEnc *e;
  nnEncWork *w;
  nnEncSize *sz;
  int i, B;
  const nnLayerSpec *spec;
  const nnShape *in, *out; /* per-sample shapes */
  const float *W, *b;      /* parameters (NULL for kinds without) */
  float *dW, *db;          /* their gradients (backward) */
  int accumulate;          /* add to dW, db (else overwrite) */
  const float *x;
  float *y;
  const float *dy;
  float *dx;      /* NULL: no input gradient wanted (layer 0) */
  float *scratch; /* w->scratch[i] */
} nnLayerCall;

/* a trunk row's parameters: none; weight [out, in] and bias [out] (torch.nn.Linear: uniform in
 * +-1/sqrt(in)); gain and bias [out] (LayerNorm: 1 and 0) */
enum { NN_MLP_PARAMS_NONE = 0, NN_MLP_PARAMS_WEIGHT = 1, NN_MLP_PARAMS_GAIN = 2 };

/* The trunk's path of a row (nn_fwd.c): batch-major activations [B, width], one call per row. */
typedef struct {
  int B, in, out;     /* rows; widths of the input and the output */
  const float *W, *b; /* linear: weight [out, in], bias [out]; layernorm: gain, bias [out]; else NULL */
  float *dW, *db;     /* their gradients (backward; NULL: no parameter gradients wanted) */
  int accumulate;     /* add to dW, db (else overwrite) */
  const float *x;     /* input [B, in] */
  float *y;           /* output [B, out] (== x for an in-place row) */
  float *scratch;     /* the row's own (layernorm: rstd [B]) */
  float *save;        /* layernorm: its input buffer, overwritten with xhat (read by its backward) */
  const float *dy;    /* backward: dLoss/dy */
  float *dx;          /* backward: dLoss/dx (NULL: not wanted; == dy for an in-place row) */
  /* forward of a linear that runs the following rows in the same pass (nnRow.fuse) */
  int act;                  /* an activation after it (nnActivation), else -1 */
  const float *ln_g, *ln_b; /* a layernorm after it (ln_g NULL: none): gain, bias */
  float *ln_y, *ln_rstd;    /* the layernorm's output and rstd; y becomes xhat */
} nnMlpCall;

/* A U-Net row's call (nn_seq.c): activations [B, channels, length] (torch's NCL), batch-major. */
typedef struct {
  int B;
  int cin, cout, lin, lout;        /* [B, cin, lin] -> [B, cout, lout] */
  int kernel, stride, pad, groups; /* convolutions' geometry; groupnorm's groups */
  int cdim;                        /* film: the conditioning's size */
  const float *W, *b;              /* parameters (NULL: none) */
  float *dW, *db;                  /* their gradients (backward; NULL: none wanted) */
  int accumulate;                  /* add to dW, db (else overwrite) */
  const float *x;                  /* input */
  float *y;                        /* output (forward) */
  const float *cond;               /* film: the conditioning [B, cdim] */
  float *dcond;                    /* film: dLoss/dcond, added to */
  float *scratch;                  /* the row's own, kept from forward to backward */
  float *col, *tmp;                /* shared scratch (nnUnet.col, .tmp floats per sample) */
  const float *dy;                 /* backward: dLoss/dy */
  float *dx;                       /* backward: dLoss/dx, ADDED to (NULL: not wanted) */
} nnSeqCall;

enum { NN_FIELD_OUT = 1, NN_FIELD_KERNEL = 2, NN_FIELD_STRIDE = 4, NN_FIELD_PAD = 8 };

/* A layer kind: one row. Backward reads the layer's input, its scratch and dy, never its own output
 * (so an in-place row may overwrite that), except in-place rows, which read their output. */
typedef struct {
  const char *name; /* JSON "type" and tensor-name prefix */
  unsigned fields;  /* NN_FIELD_*: its JSON fields (all required), the others must be 0 */
  int has_params;   /* weight and bias tensors */
  int plain_in;     /* wants its input plain (a blocked one is reordered first) */
  int in_place;     /* its output is its input's buffer and layout */
  /* validate spec against the per-sample input shape and give the output's; TK_EINVAL/TK_ERANGE with a
   * message naming layer i and the field */
  int (*shape)(const nnLayerSpec *s, const nnShape *in, nnShape *out, int i);
  /* weight and bias shapes (has_params rows); *fan_in for the initialization bound */
  void (*params)(const nnLayerSpec *s, const nnShape *in, nnTensor *w, nnTensor *b, int64_t *fan_in);
  int64_t (*scratch)(const nnLayerSpec *s, const nnShape *in, const nnShape *out); /* floats per sample */
  void (*forward)(const nnLayerCall *c);
  void (*backward)(const nnLayerCall *c); /* dW, db always; dx when not NULL */
  /* the trunk (nnNet's MLP, batch-major; NULL: an encoder-only kind). The encoder columns above are NULL
   * for a trunk-only kind (an encoder refuses it). */
  int act;                  /* an activation: its nnActivation (fusable after a linear), else -1 */
  int mlp_fuse;             /* its forward may run a following layernorm/activation in its pass */
  int mlp_in_place;         /* its forward writes over its input (activations) */
  int mlp_dx_in_place;      /* its backward turns dy into dx in place (activations, layernorm) */
  int mlp_scratch;          /* floats of its own per batch row (layernorm: rstd) */
  int mlp_params;           /* NN_MLP_PARAMS_*: its tensors */
  const char *mlp_names[2]; /* their names (a printf format of the layer index): weight, bias */
  void (*mlp_forward)(const nnMlpCall *c);
  void (*mlp_backward)(const nnMlpCall *c); /* dW, db when not NULL; dx when not NULL */
  /* a U-Net's rows (NULL: not one): parameters (weight rank 3, [out, in, k] or a transposed convolution's
   * [in, out, k]; 1: vectors [C]; 2: a linear's [out, in]), per-sample floats of its own scratch and of the
   * shared col and tmp buffers, forward and backward (dx added to) */
  int seq_weight_rank; /* 0: no parameters */
  int seq_gain;        /* weight 1 and bias 0 (groupnorm), else uniform in +-1/sqrt(fan_in) */
  int64_t (*seq_sizes)(const nnSeqCall *c, int64_t *scratch, int64_t *col, int64_t *tmp); /* fan_in */
  void (*seq_forward)(const nnSeqCall *c);
  void (*seq_backward)(const nnSeqCall *c);
} nnLayerRow;

/* the table, indexed by nnLayerKind; NULL for an unknown kind */
const nnLayerRow *nn_layer_row(nnLayerKind k);
#define NN_LAYER_KINDS 13
/* the trunk's rows (nn_fwd.c) */
void nn_mlp_linear_forward(const nnMlpCall *c);
void nn_mlp_linear_backward(const nnMlpCall *c);
void nn_mlp_layernorm_forward(const nnMlpCall *c);
void nn_mlp_layernorm_backward(const nnMlpCall *c);
void nn_mlp_act_forward(const nnMlpCall *c, nnActivation act);  /* in place */
void nn_mlp_act_backward(const nnMlpCall *c, nnActivation act); /* in place, through the output */

/* nn_seq.c: the U-Net's row kernels */
int64_t nn_conv1d_sizes(const nnSeqCall *c, int64_t *scratch, int64_t *col, int64_t *tmp);
void nn_conv1d_forward(const nnSeqCall *c);
void nn_conv1d_backward(const nnSeqCall *c);
int64_t nn_convt1d_sizes(const nnSeqCall *c, int64_t *scratch, int64_t *col, int64_t *tmp);
void nn_convt1d_forward(const nnSeqCall *c);
void nn_convt1d_backward(const nnSeqCall *c);
int64_t nn_groupnorm_sizes(const nnSeqCall *c, int64_t *scratch, int64_t *col, int64_t *tmp);
void nn_groupnorm_forward(const nnSeqCall *c);
void nn_groupnorm_backward(const nnSeqCall *c);
int64_t nn_mish_sizes(const nnSeqCall *c, int64_t *scratch, int64_t *col, int64_t *tmp);
void nn_mish_forward(const nnSeqCall *c);
void nn_mish_backward(const nnSeqCall *c);
int64_t nn_film_sizes(const nnSeqCall *c, int64_t *scratch, int64_t *col, int64_t *tmp);
void nn_film_forward(const nnSeqCall *c);
void nn_film_backward(const nnSeqCall *c);
int64_t nn_seq_linear_sizes(const nnSeqCall *c, int64_t *scratch, int64_t *col, int64_t *tmp);
void nn_seq_linear_forward(const nnSeqCall *c);
void nn_seq_linear_backward(const nnSeqCall *c);

/* nn_unet.c: the U-Net (nnArch.unet) */
enum { NN_UNET_ROW = 0, NN_UNET_ADD = 1, NN_UNET_CONCAT = 2, NN_UNET_COND = 3 };
int nn_unet_validate(const nnArch *a);                          /* the unet fields, TK_E* with a message */
void nn_unet_layout(const nnArch *a, nnNet *net, int64_t *off); /* nodes, values and tensors */
void nn_unet_init(nnNet *net, tkRng *r);                        /* torch's default initialization */
int64_t nn_unet_work_floats(const nnNet *net, int max_batch);   /* values, gradients and scratch */
/* forward of x [B, obs_dim] into w->out (w->x = x, w->batch = B, stage FORWARD) */
void nn_unet_forward(const nnNet *net, nnWork *w, const float *x, int B);
/* backward from dout [B, act_dim]: parameter gradients into grads (NULL: none), added if accumulate;
 * dx [B, obs_dim] if not NULL */
void nn_unet_backward(const nnNet *net, nnWork *w, const float *dout, float *dx, float *grads,
                      int accumulate);

/* nn_conv.c */
/* build layer i's primitives for batch B: src layout act[i] (given), sets act[i+1] (oneDNN's choice);
 * want_dx: make the backward-data primitive too. The output buffer holds cap floats. */
int nn_conv_make(nnEncWork *w, const nnEnc *e, int i, int B, const nnActLayout *in, nnActLayout *out,
                 int64_t cap, int want_dx, nnConv **conv);
void nn_conv_free(nnConv *c); /* NULL-safe */
void nn_conv_forward(const nnLayerCall *c);
void nn_conv_backward(const nnLayerCall *c);
/* a reorder between two 4-D layouts (op->p NULL when they are equal) */
int nn_dnn_reorder_make(nnEncWork *w, const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to,
                        nnDnnOp *op);
void nn_dnn_reorder_run(nnEncWork *w, nnDnnOp *op, const void *from, void *to);
void nn_dnn_op_free(nnDnnOp *op);
int nn_dnn_plain_md(dnnl_memory_desc_t *md, int B, const nnShape *s); /* nchw of a rank-3 shape */
int nn_dnn_status(dnnl_status_t st, const char *what);                /* tk_error naming it, or 0 */

#endif
