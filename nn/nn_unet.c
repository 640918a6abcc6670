/* nn/nn_unet.c -- the 1-D temporal U-Net (nn.h, nnUnetArch: Diffusion Policy's ConditionalUnet1D with FiLM)
 * composed of rows of the layer table (conv1d, conv_transpose1d, groupnorm, mish, film, linear; kernels in
 * nn_seq.c) and explicit wiring (residual adds, skip concatenations, the conditioning vector). The layout
 * walks the architecture once and writes the net as a node list (nnUnet): each node reads and writes
 * values, per-sample buffers a work holds for max_batch samples with a gradient buffer each. Forward runs
 * the nodes in order; backward zeroes the gradients and runs them in reverse, every node adding to the
 * gradients of what it read. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "nn_internal.h"

int nn_unet_validate(const nnArch *a) {
  const nnUnetArch *u = &a->unet;
  if (u->levels < 1 || u->levels > NN_UNET_MAX_LEVELS)
    return tk_error(TK_ERANGE, "nn arch: unet levels %d not in 1..%d", u->levels, NN_UNET_MAX_LEVELS);
  if (u->kernel < 1 || u->kernel > 15 || u->kernel % 2 == 0)
    return tk_error(TK_ERANGE, "nn arch: unet kernel %d is not odd in 1..15", u->kernel);
  if (u->groups < 1 || u->groups > 4096)
    return tk_error(TK_ERANGE, "nn arch: unet groups %d not in 1..4096", u->groups);
  for (int i = 0; i < u->levels; i++) {
    if (u->down[i] < 1 || u->down[i] > 4096)
      return tk_error(TK_ERANGE, "nn arch: unet down_dims[%d] = %d not in 1..4096", i, u->down[i]);
    if (u->down[i] % u->groups)
      return tk_error(TK_EINVAL, "nn arch: unet down_dims[%d] = %d is not a multiple of the %d groups", i,
                      u->down[i], u->groups);
  }
  if (u->horizon < 1 || u->horizon > 1024 || u->horizon % (1 << (u->levels - 1)))
    return tk_error(TK_EINVAL,
                    "nn arch: unet horizon %d is not in 1..1024 and divisible by 2^(levels - 1) = %d",
                    u->horizon, 1 << (u->levels - 1));
  if (u->temb < 2 || u->temb > 1024 || u->temb % 2)
    return tk_error(TK_ERANGE, "nn arch: unet temb %d is not an even size in 2..1024", u->temb);
  if (a->act_dim % u->horizon)
    return tk_error(TK_EINVAL, "nn arch: unet: act_dim %d is not %d steps of a sample", a->act_dim,
                    u->horizon);
  if (a->obs_dim < a->act_dim + u->temb)
    return tk_error(TK_EINVAL,
                    "nn arch: unet: obs_dim %d is less than the sample (%d) and the embedding (%d)",
                    a->obs_dim, a->act_dim, u->temb);
  if (a->head != NN_HEAD_MSE || a->tanh || a->rnn_layers > 0 || a->n_hidden != 0 || a->layer_norm)
    return tk_error(TK_EINVAL,
                    "nn arch: a unet has an MSE head without tanh, no LSTM, no hidden layers and no "
                    "layer_norm");
  return 0;
}

/* ---- layout ------------------------------------------------------------------------------------------ */

typedef struct {
  nnNet *net;
  int64_t *off;
  int cdim; /* the conditioning's size */
} builder;

static int new_val(builder *b, int64_t size) {
  nnUnet *u = &b->net->unet;
  int v = u->n_vals++;
  u->val_size[v] = size;
  u->val_off[v] = u->per_sample;
  u->per_sample += nn_round_up(size);
  return v;
}

static void add_tensor3(builder *b, const char *prefix, const char *what, int ndim, int64_t d0, int64_t d1,
                        int64_t d2) {
  nnTensor *t = &b->net->tensors[b->net->n_tensors++];
  snprintf(t->name, sizeof t->name, "%s.%s", prefix, what);
  t->ndim = ndim;
  t->shape[0] = d0, t->shape[1] = ndim > 1 ? d1 : 0, t->shape[2] = ndim > 2 ? d2 : 0, t->shape[3] = 0;
  t->numel = d0 * (ndim > 1 ? d1 : 1) * (ndim > 2 ? d2 : 1);
  t->offset = *b->off;
  *b->off += nn_round_up(t->numel);
}

static nnSeqCall node_dims(const nnUnetNode *n, const nnUnet *u) {
  return (nnSeqCall){.B = 1,
                     .cin = n->cin,
                     .cout = n->cout,
                     .lin = n->lin,
                     .lout = n->lout,
                     .kernel = n->kernel,
                     .stride = n->stride,
                     .pad = n->pad,
                     .groups = n->groups,
                     .cdim = n->kind == NN_LAYER_FILM ? (int)u->val_size[n->in2] : 0};
}

/* a row of the table from value in: its output value (and tensors named prefix.weight, prefix.bias) */
static int add_row(builder *b, nnLayerKind kind, const char *prefix, int in, int in2, int cin, int cout,
                   int lin, int k, int s, int p) {
  nnUnet *u = &b->net->unet;
  const nnLayerRow *r = nn_layer_row(kind);
  nnUnetNode *n = &u->node[u->n_nodes++];
  const int lout = kind == NN_LAYER_CONV1D             ? (lin + 2 * p - k) / s + 1
                   : kind == NN_LAYER_CONV_TRANSPOSE1D ? (lin - 1) * s - 2 * p + k
                                                       : lin;
  *n = (nnUnetNode){.op = NN_UNET_ROW,
                    .kind = kind,
                    .in = in,
                    .in2 = in2,
                    .cin = cin,
                    .cout = cout,
                    .lin = lin,
                    .lout = lout,
                    .kernel = k,
                    .stride = s,
                    .pad = p,
                    .groups = kind == NN_LAYER_GROUPNORM ? b->net->arch.unet.groups : 0,
                    .tensor = -1,
                    .scratch = -1};
  nnSeqCall c = node_dims(n, u);
  int64_t scratch, col, tmp;
  r->seq_sizes(&c, &scratch, &col, &tmp);
  u->col = TK_MAX(u->col, col);
  u->tmp = TK_MAX(u->tmp, tmp);
  if (scratch) n->scratch = new_val(b, scratch);
  if (r->seq_weight_rank) {
    n->tensor = b->net->n_tensors;
    if (kind == NN_LAYER_CONV1D)
      add_tensor3(b, prefix, "weight", 3, cout, cin, k);
    else if (kind == NN_LAYER_CONV_TRANSPOSE1D)
      add_tensor3(b, prefix, "weight", 3, cin, cout, k);
    else if (kind == NN_LAYER_FILM)
      add_tensor3(b, prefix, "weight", 2, 2 * (int64_t)cout, c.cdim, 0);
    else if (kind == NN_LAYER_LINEAR)
      add_tensor3(b, prefix, "weight", 2, cout, cin, 0);
    else
      add_tensor3(b, prefix, "weight", 1, cout, 0, 0);
    add_tensor3(b, prefix, "bias", 1, kind == NN_LAYER_FILM ? 2 * (int64_t)cout : cout, 0, 0);
  }
  n->out = new_val(b, (int64_t)cout * lout);
  return n->out;
}

/* wiring: add, concat, cond */
static int add_op(builder *b, int op, int in, int in2, int64_t size) {
  nnUnet *u = &b->net->unet;
  nnUnetNode *n = &u->node[u->n_nodes++];
  *n = (nnUnetNode){.op = op, .in = in, .in2 = in2, .tensor = -1, .scratch = -1};
  n->out = new_val(b, size);
  return n->out;
}

/* ConditionalResidualBlock1D(cin, cout, cond_dim, kernel, n_groups, cond_predict_scale=True) */
static int res_block(builder *b, const char *P, int x, int cin, int cout, int L) {
  const int k = b->net->arch.unet.kernel, v_cond = b->net->unet.v_cond;
  char name[NN_NAME_MAX];
#define NAME(s) (snprintf(name, sizeof name, "%s." s, P), name)
  int h = add_row(b, NN_LAYER_CONV1D, NAME("blocks.0.block.0"), x, -1, cin, cout, L, k, 1, k / 2);
  h = add_row(b, NN_LAYER_GROUPNORM, NAME("blocks.0.block.1"), h, -1, cout, cout, L, 0, 0, 0);
  h = add_row(b, NN_LAYER_MISH, NULL, h, -1, cout, cout, L, 0, 0, 0);
  h = add_row(b, NN_LAYER_FILM, NAME("cond_encoder.1"), h, v_cond, cout, cout, L, 0, 0, 0);
  h = add_row(b, NN_LAYER_CONV1D, NAME("blocks.1.block.0"), h, -1, cout, cout, L, k, 1, k / 2);
  h = add_row(b, NN_LAYER_GROUPNORM, NAME("blocks.1.block.1"), h, -1, cout, cout, L, 0, 0, 0);
  h = add_row(b, NN_LAYER_MISH, NULL, h, -1, cout, cout, L, 0, 0, 0);
  int r = cin == cout ? x : add_row(b, NN_LAYER_CONV1D, NAME("residual_conv"), x, -1, cin, cout, L, 1, 1, 0);
#undef NAME
  return add_op(b, NN_UNET_ADD, h, r, (int64_t)cout * L);
}

void nn_unet_layout(const nnArch *a, nnNet *net, int64_t *off) {
  const nnUnetArch *ua = &a->unet;
  nnUnet *u = &net->unet;
  const int T = ua->horizon, C = a->act_dim / T, temb = ua->temb, n = ua->levels;
  u->cond_obs = a->obs_dim - a->act_dim - temb;
  builder b = {.net = net, .off = off, .cdim = temb + u->cond_obs};
  char P[NN_NAME_MAX];
  u->v_x = new_val(&b, (int64_t)C * T);
  u->v_emb = new_val(&b, temb);
  /* the step encoder (SinusoidalPosEmb is the input's), then cond = [step features | observations] */
  int s = add_row(&b, NN_LAYER_LINEAR, "diffusion_step_encoder.1", u->v_emb, -1, temb, 4 * temb, 1, 0, 0, 0);
  s = add_row(&b, NN_LAYER_MISH, NULL, s, -1, 4 * temb, 4 * temb, 1, 0, 0, 0);
  s = add_row(&b, NN_LAYER_LINEAR, "diffusion_step_encoder.3", s, -1, 4 * temb, temb, 1, 0, 0, 0);
  u->v_cond = add_op(&b, NN_UNET_COND, s, -1, b.cdim);
  int x = u->v_x, cin = C, L = T, skip[NN_UNET_MAX_LEVELS];
  for (int i = 0; i < n; i++) {
    const int d = ua->down[i];
    snprintf(P, sizeof P, "down_modules.%d.0", i);
    x = res_block(&b, P, x, cin, d, L);
    snprintf(P, sizeof P, "down_modules.%d.1", i);
    x = res_block(&b, P, x, d, d, L);
    skip[i] = x;
    if (i < n - 1) { /* Downsample1d: Conv1d(d, d, 3, 2, 1) */
      snprintf(P, sizeof P, "down_modules.%d.2.conv", i);
      x = add_row(&b, NN_LAYER_CONV1D, P, x, -1, d, d, L, 3, 2, 1);
      L /= 2;
    }
    cin = d;
  }
  for (int m = 0; m < 2; m++) {
    snprintf(P, sizeof P, "mid_modules.%d", m);
    x = res_block(&b, P, x, ua->down[n - 1], ua->down[n - 1], L);
  }
  for (int j = 0; j < n - 1; j++) {
    const int i = n - 2 - j, d = ua->down[i], d2 = ua->down[i + 1];
    x = add_op(&b, NN_UNET_CONCAT, x, skip[i + 1], 2 * (int64_t)d2 * L);
    snprintf(P, sizeof P, "up_modules.%d.0", j);
    x = res_block(&b, P, x, 2 * d2, d, L);
    snprintf(P, sizeof P, "up_modules.%d.1", j);
    x = res_block(&b, P, x, d, d, L);
    snprintf(P, sizeof P, "up_modules.%d.2.conv", j); /* Upsample1d: ConvTranspose1d(d, d, 4, 2, 1) */
    x = add_row(&b, NN_LAYER_CONV_TRANSPOSE1D, P, x, -1, d, d, L, 4, 2, 1);
    L *= 2;
  }
  const int d0 = ua->down[0], k = ua->kernel;
  x = add_row(&b, NN_LAYER_CONV1D, "final_conv.0.block.0", x, -1, d0, d0, L, k, 1, k / 2);
  x = add_row(&b, NN_LAYER_GROUPNORM, "final_conv.0.block.1", x, -1, d0, d0, L, 0, 0, 0);
  x = add_row(&b, NN_LAYER_MISH, NULL, x, -1, d0, d0, L, 0, 0, 0);
  u->v_y = add_row(&b, NN_LAYER_CONV1D, "final_conv.1", x, -1, d0, C, L, 1, 1, 0);
  u->col = nn_round_up(u->col);
  u->tmp = nn_round_up(u->tmp);
}

void nn_unet_init(nnNet *net, tkRng *r) {
  const nnUnet *u = &net->unet;
  for (int i = 0; i < u->n_nodes; i++) {
    const nnUnetNode *n = &u->node[i];
    if (n->tensor < 0) continue;
    const nnLayerRow *row = nn_layer_row((nnLayerKind)n->kind);
    const nnTensor *t = &net->tensors[n->tensor];
    if (row->seq_gain) { /* GroupNorm: weight 1, bias 0 */
      for (int64_t j = 0; j < t[0].numel; j++)
        t[0].data[j] = 1.0f;
      continue;
    }
    nnSeqCall c = node_dims(n, u);
    int64_t s, cl, tm;
    const double bound = 1.0 / sqrt((double)row->seq_sizes(&c, &s, &cl, &tm));
    for (int q = 0; q < 2; q++)
      for (int64_t j = 0; j < t[q].numel; j++)
        t[q].data[j] = (float)tk_rng_range(r, -bound, bound);
  }
}

/* ---- forward and backward ---------------------------------------------------------------------------- */

int64_t nn_unet_work_floats(const nnNet *net, int max_batch) {
  const nnUnet *u = &net->unet;
  return (2 * u->per_sample + u->col + u->tmp) * (int64_t)max_batch;
}

typedef struct {
  const nnNet *net;
  const nnUnet *u;
  int B;
  int64_t mb;
  float *V, *G; /* values, their gradients: value v of sample b at V + val_off[v] mb + b val_size[v] */
  float *col, *tmp;
} ctx;

static ctx make_ctx(const nnNet *net, const nnWork *w, int B) {
  ctx c = {.net = net, .u = &net->unet, .B = B, .mb = (int64_t)w->max_batch * w->max_T};
  c.V = w->unet;
  c.G = c.V + c.u->per_sample * c.mb;
  c.col = c.G + c.u->per_sample * c.mb;
  c.tmp = c.col + c.u->col * c.mb;
  return c;
}

static float *V(const ctx *c, int v) { return c->V + c->u->val_off[v] * c->mb; }
static float *G(const ctx *c, int v) { return c->G + c->u->val_off[v] * c->mb; }

static nnSeqCall row_call(const ctx *c, const nnUnetNode *n, float *grads) {
  nnSeqCall s = node_dims(n, c->u);
  s.B = c->B;
  s.x = V(c, n->in);
  s.y = V(c, n->out);
  s.cond = n->in2 >= 0 ? V(c, n->in2) : NULL;
  s.scratch = n->scratch >= 0 ? V(c, n->scratch) : NULL;
  s.col = c->col;
  s.tmp = c->tmp;
  if (n->tensor >= 0) {
    const nnTensor *t = &c->net->tensors[n->tensor];
    s.W = t[0].data, s.b = t[1].data;
    if (grads) s.dW = grads + t[0].offset, s.db = grads + t[1].offset;
  }
  return s;
}

void nn_unet_forward(const nnNet *net, nnWork *w, const float *x, int B) {
  const ctx c = make_ctx(net, w, B);
  const nnUnet *u = c.u;
  const int in = net->arch.obs_dim, T = net->arch.unet.horizon, C = net->arch.act_dim / T,
            temb = net->arch.unet.temb, co = u->cond_obs;
  float *vx = V(&c, u->v_x), *ve = V(&c, u->v_emb);
  for (int b = 0; b < B; b++) { /* the sample [T, C] -> [C, T]; the step embedding */
    const float *r = x + (int64_t)b * in;
    for (int ch = 0; ch < C; ch++)
      for (int t = 0; t < T; t++)
        vx[((int64_t)b * C + ch) * T + t] = r[co + t * C + ch];
    memcpy(ve + (int64_t)b * temb, r + co + T * C, sizeof(float) * (size_t)temb);
  }
  for (int i = 0; i < u->n_nodes; i++) {
    const nnUnetNode *n = &u->node[i];
    float *y = V(&c, n->out);
    const float *a = V(&c, n->in);
    const int64_t sa = u->val_size[n->in], so = u->val_size[n->out];
    switch (n->op) {
    case NN_UNET_ROW: {
      nnSeqCall s = row_call(&c, n, NULL);
      nn_layer_row((nnLayerKind)n->kind)->seq_forward(&s);
      break;
    }
    case NN_UNET_ADD: {
      const float *a2 = V(&c, n->in2);
      for (int64_t k = 0; k < (int64_t)B * so; k++)
        y[k] = a[k] + a2[k];
      break;
    }
    case NN_UNET_CONCAT: {
      const float *a2 = V(&c, n->in2);
      const int64_t s2 = u->val_size[n->in2];
      for (int b = 0; b < B; b++) {
        memcpy(y + b * so, a + b * sa, sizeof(float) * (size_t)sa);
        memcpy(y + b * so + sa, a2 + b * s2, sizeof(float) * (size_t)s2);
      }
      break;
    }
    case NN_UNET_COND:
      for (int b = 0; b < B; b++) {
        memcpy(y + b * so, a + b * sa, sizeof(float) * (size_t)sa);
        memcpy(y + b * so + sa, x + (int64_t)b * in, sizeof(float) * (size_t)co);
      }
      break;
    }
  }
  const float *vy = V(&c, u->v_y);
  for (int b = 0; b < B; b++) /* [C, T] -> the chunk [T, C] */
    for (int ch = 0; ch < C; ch++)
      for (int t = 0; t < T; t++)
        w->out[(int64_t)b * T * C + t * C + ch] = vy[((int64_t)b * C + ch) * T + t];
  w->x = x;
  w->batch = B;
  w->stage = NN_STAGE_FORWARD;
}

void nn_unet_backward(const nnNet *net, nnWork *w, const float *dout, float *dx, float *grads,
                      int accumulate) {
  const int B = w->batch;
  const ctx c = make_ctx(net, w, B);
  const nnUnet *u = c.u;
  const int in = net->arch.obs_dim, T = net->arch.unet.horizon, C = net->arch.act_dim / T,
            temb = net->arch.unet.temb, co = u->cond_obs;
  memset(c.G, 0, sizeof(float) * (size_t)(u->per_sample * c.mb));
  float *gy = G(&c, u->v_y);
  for (int b = 0; b < B; b++)
    for (int ch = 0; ch < C; ch++)
      for (int t = 0; t < T; t++)
        gy[((int64_t)b * C + ch) * T + t] = dout[(int64_t)b * T * C + t * C + ch];
  for (int i = u->n_nodes - 1; i >= 0; i--) {
    const nnUnetNode *n = &u->node[i];
    const float *gyn = G(&c, n->out);
    float *ga = G(&c, n->in);
    const int64_t sa = u->val_size[n->in], so = u->val_size[n->out];
    switch (n->op) {
    case NN_UNET_ROW: {
      nnSeqCall s = row_call(&c, n, grads);
      s.accumulate = accumulate;
      s.dy = gyn;
      /* the sample and the embedding need their gradients only for dx */
      s.dx = (n->in == u->v_x || n->in == u->v_emb) && !dx ? NULL : ga;
      s.dcond = n->in2 >= 0 ? G(&c, n->in2) : NULL;
      nn_layer_row((nnLayerKind)n->kind)->seq_backward(&s);
      break;
    }
    case NN_UNET_ADD: {
      float *g2 = G(&c, n->in2);
      for (int64_t k = 0; k < (int64_t)B * so; k++) {
        ga[k] += gyn[k];
        g2[k] += gyn[k];
      }
      break;
    }
    case NN_UNET_CONCAT: {
      float *g2 = G(&c, n->in2);
      const int64_t s2 = u->val_size[n->in2];
      for (int b = 0; b < B; b++) {
        for (int64_t k = 0; k < sa; k++)
          ga[b * sa + k] += gyn[b * so + k];
        for (int64_t k = 0; k < s2; k++)
          g2[b * s2 + k] += gyn[b * so + sa + k];
      }
      break;
    }
    case NN_UNET_COND:
      for (int b = 0; b < B; b++) {
        for (int64_t k = 0; k < sa; k++)
          ga[b * sa + k] += gyn[b * so + k];
        if (dx) memcpy(dx + (int64_t)b * in, gyn + b * so + sa, sizeof(float) * (size_t)co);
      }
      break;
    }
  }
  if (!dx) return;
  const float *gx = G(&c, u->v_x), *ge = G(&c, u->v_emb);
  for (int b = 0; b < B; b++) {
    float *r = dx + (int64_t)b * in;
    for (int ch = 0; ch < C; ch++)
      for (int t = 0; t < T; t++)
        r[co + t * C + ch] = gx[((int64_t)b * C + ch) * T + t];
    memcpy(r + co + T * C, ge + (int64_t)b * temb, sizeof(float) * (size_t)temb);
  }
}
