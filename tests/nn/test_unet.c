/* nn U-Net (nn_seq.c, nn_unet.c): the gradients of every new row of the layer table (conv1d,
 * conv_transpose1d, groupnorm, mish, film, and the linear's U-Net path) and of two whole U-Nets (every
 * parameter and the input) by central finite differences of the float forward, the architecture's JSON
 * form, names and shapes as ConditionalUnet1D's state_dict, malformed U-Nets refused, and training. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn_internal.h"

#define H 3e-3 /* finite-difference step */

static float *fmalloc(int64_t n) {
  float *p = calloc((size_t)(n > 0 ? n : 1), sizeof(float));
  cr_assert(p);
  return p;
}

static void fill(float *v, int64_t n, tkRng *r, double lo, double hi) {
  for (int64_t i = 0; i < n; i++)
    v[i] = (float)tk_rng_range(r, lo, hi);
}

/* |analytic - numeric| against 2e-3 + 2e-2 |numeric|: the worst ratio (<= 1 passes) */
static double check(double ana, double num, double *worst_diff) {
  const double d = fabs(ana - num);
  *worst_diff = fmax(*worst_diff, d);
  return d / (2e-3 + 2e-2 * fabs(num));
}

/* ---- one row ----------------------------------------------------------------------------------------- */

typedef struct {
  nnSeqCall c;
  const nnLayerRow *row;
  float *W, *b, *x, *cond, *y, *r, *dW, *db, *dx, *dcond, *scratch, *col, *tmp;
  int64_t nW, nb, nx, ny, ncond;
} rowT;

static double row_loss(rowT *t) {
  t->row->seq_forward(&t->c);
  double L = 0;
  for (int64_t i = 0; i < t->ny; i++)
    L += (double)t->r[i] * t->y[i];
  return L;
}

/* FD of every element of v (n floats) against its analytic gradient g */
static double fd_vec(rowT *t, float *v, const float *g, int64_t n, const char *what, double *wd) {
  double worst = 0;
  for (int64_t i = 0; i < n; i++) {
    const float keep = v[i];
    v[i] = keep + (float)H;
    const double lp = row_loss(t);
    v[i] = keep - (float)H;
    const double lm = row_loss(t);
    v[i] = keep;
    const double num = (lp - lm) / (2 * H);
    double q = check(g[i], num, wd);
    if (q > worst) worst = q;
    cr_expect(q <= 1, "%s %s[%lld]: analytic %.6g, numeric %.6g", t->row->name, what, (long long)i,
              (double)g[i], num);
  }
  return worst;
}

static void fd_row(nnLayerKind kind, int B, int cin, int cout, int lin, int k, int s, int p, int groups,
                   int cdim) {
  rowT t = {.row = nn_layer_row(kind)};
  nnSeqCall *c = &t.c;
  *c = (nnSeqCall){.B = 1,
                   .cin = cin,
                   .cout = cout,
                   .lin = lin,
                   .kernel = k,
                   .stride = s,
                   .pad = p,
                   .groups = groups,
                   .cdim = cdim};
  c->lout = kind == NN_LAYER_CONV1D             ? (lin + 2 * p - k) / s + 1
            : kind == NN_LAYER_CONV_TRANSPOSE1D ? (lin - 1) * s - 2 * p + k
                                                : lin;
  int64_t sc, col, tmp;
  t.row->seq_sizes(c, &sc, &col, &tmp);
  c->B = B;
  t.nx = (int64_t)B * cin * lin;
  t.ny = (int64_t)B * cout * c->lout;
  t.ncond = (int64_t)B * cdim;
  switch (t.row->seq_weight_rank) {
  case 3: t.nW = (int64_t)cin * cout * k, t.nb = cout; break;
  case 2:
    t.nW = kind == NN_LAYER_FILM ? 2 * (int64_t)cout * cdim : (int64_t)cout * cin;
    t.nb = kind == NN_LAYER_FILM ? 2 * cout : cout;
    break;
  case 1: t.nW = t.nb = cout; break;
  default: t.nW = t.nb = 0;
  }
  tkRng r;
  tk_rng_seed(&r, 1000 + kind);
  t.W = fmalloc(t.nW), t.b = fmalloc(t.nb), t.x = fmalloc(t.nx), t.cond = fmalloc(t.ncond);
  t.y = fmalloc(t.ny), t.r = fmalloc(t.ny), t.dW = fmalloc(t.nW), t.db = fmalloc(t.nb), t.dx = fmalloc(t.nx);
  t.dcond = fmalloc(t.ncond), t.scratch = fmalloc(sc * B), t.col = fmalloc(col * B), t.tmp = fmalloc(tmp * B);
  fill(t.W, t.nW, &r, -0.6, 0.6);
  fill(t.b, t.nb, &r, -0.5, 0.5);
  if (kind == NN_LAYER_GROUPNORM) fill(t.W, t.nW, &r, 0.5, 1.5);
  fill(t.x, t.nx, &r, -2, 2);
  fill(t.cond, t.ncond, &r, -2, 2);
  fill(t.r, t.ny, &r, -1, 1);
  c->W = t.nW ? t.W : NULL, c->b = t.nb ? t.b : NULL, c->x = t.x, c->y = t.y, c->cond = t.cond;
  c->scratch = t.scratch, c->col = t.col, c->tmp = t.tmp;
  row_loss(&t);
  /* backward: parameter gradients overwritten (garbage first), dx and dcond added to (from a known start) */
  for (int64_t i = 0; i < t.nW; i++)
    t.dW[i] = 7;
  for (int64_t i = 0; i < t.nb; i++)
    t.db[i] = 7;
  for (int64_t i = 0; i < t.nx; i++)
    t.dx[i] = 0.25f;
  for (int64_t i = 0; i < t.ncond; i++)
    t.dcond[i] = 0.25f;
  nnSeqCall bc = *c;
  bc.dy = t.r, bc.dx = t.dx, bc.dW = t.nW ? t.dW : NULL, bc.db = t.nb ? t.db : NULL;
  bc.dcond = kind == NN_LAYER_FILM ? t.dcond : NULL;
  t.row->seq_backward(&bc);
  for (int64_t i = 0; i < t.nx; i++)
    t.dx[i] -= 0.25f;
  for (int64_t i = 0; i < t.ncond; i++)
    t.dcond[i] -= 0.25f;
  double wd = 0, q = 0;
  q = fmax(q, fd_vec(&t, t.x, t.dx, t.nx, "x", &wd));
  q = fmax(q, fd_vec(&t, t.W, t.dW, t.nW, "weight", &wd));
  q = fmax(q, fd_vec(&t, t.b, t.db, t.nb, "bias", &wd));
  if (kind == NN_LAYER_FILM) q = fmax(q, fd_vec(&t, t.cond, t.dcond, t.ncond, "cond", &wd));
  printf("fd %s: max |analytic - numeric| %.3g (worst ratio to the tolerance %.3f)\n", t.row->name, wd, q);
  /* accumulate adds to what is there */
  if (t.nW) {
    float *dW2 = fmalloc(t.nW), *db2 = fmalloc(t.nb);
    memcpy(dW2, t.dW, sizeof(float) * (size_t)t.nW);
    memcpy(db2, t.db, sizeof(float) * (size_t)t.nb);
    row_loss(&t);
    bc.accumulate = 1, bc.dx = NULL, bc.dcond = NULL;
    t.row->seq_backward(&bc);
    for (int64_t i = 0; i < t.nW; i++)
      cr_expect(fabsf(t.dW[i] - 2 * dW2[i]) <= 1e-5f * (1 + fabsf(dW2[i])), "%s: accumulate", t.row->name);
    for (int64_t i = 0; i < t.nb; i++)
      cr_expect(fabsf(t.db[i] - 2 * db2[i]) <= 1e-5f * (1 + fabsf(db2[i])), "%s: accumulate", t.row->name);
    free(dW2);
    free(db2);
  }
  float *all[] = {t.W, t.b, t.x, t.cond, t.y, t.r, t.dW, t.db, t.dx, t.dcond, t.scratch, t.col, t.tmp};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
    free(all[i]);
}

Test(fd, conv1d) {
  fd_row(NN_LAYER_CONV1D, 2, 3, 4, 7, 5, 1, 2, 0, 0); /* 'same' */
  fd_row(NN_LAYER_CONV1D, 2, 3, 4, 8, 3, 2, 1, 0, 0); /* the downsample */
  fd_row(NN_LAYER_CONV1D, 3, 5, 2, 4, 1, 1, 0, 0, 0); /* 1x1 */
}

Test(fd, conv_transpose1d) { fd_row(NN_LAYER_CONV_TRANSPOSE1D, 2, 3, 4, 4, 4, 2, 1, 0, 0); }

Test(fd, groupnorm) {
  fd_row(NN_LAYER_GROUPNORM, 2, 8, 8, 5, 0, 0, 0, 4, 0);
  fd_row(NN_LAYER_GROUPNORM, 2, 6, 6, 3, 0, 0, 0, 1, 0);
}

Test(fd, mish) { fd_row(NN_LAYER_MISH, 2, 4, 4, 6, 0, 0, 0, 0, 0); }

Test(fd, film) { fd_row(NN_LAYER_FILM, 3, 4, 4, 5, 0, 0, 0, 0, 6); }

Test(fd, linear_seq) { fd_row(NN_LAYER_LINEAR, 3, 5, 4, 1, 0, 0, 0, 0, 0); }

/* ---- the whole U-Net --------------------------------------------------------------------------------- */

static nnArch unet_arch(int levels, const int *down, int kernel, int groups, int horizon, int C, int cond,
                        int temb) {
  nnArch a;
  nn_arch_default(&a);
  a.n_hidden = 0;
  a.head = NN_HEAD_MSE;
  a.act_dim = horizon * C;
  a.obs_dim = cond + a.act_dim + temb;
  a.unet =
      (nnUnetArch){.levels = levels, .kernel = kernel, .groups = groups, .horizon = horizon, .temb = temb};
  for (int i = 0; i < levels; i++)
    a.unet.down[i] = down[i];
  return a;
}

static double net_loss(const nnNet *net, nnWork *w, const float *x, const float *r, int B) {
  cr_assert_eq(nn_forward(net, w, x, B), 0, "%s", tk_errmsg());
  double L = 0;
  for (int64_t i = 0; i < (int64_t)B * net->out_dim; i++)
    L += (double)r[i] * w->out[i];
  return L;
}

static void fd_unet(const nnArch *a, int B, int stride) {
  nnNet *net = nn_net_make(a, 5);
  cr_assert(net, "%s", tk_errmsg());
  nnWork *w = nn_work_make(net, B);
  cr_assert(w, "%s", tk_errmsg());
  tkRng r;
  tk_rng_seed(&r, 9);
  for (int i = 0; i < net->n_tensors; i++) /* GroupNorm away from 1 and 0 */
    if (strstr(net->tensors[i].name, "block.1"))
      fill(net->tensors[i].data, net->tensors[i].numel, &r,
           strstr(net->tensors[i].name, "weight") ? 0.5 : -0.3,
           strstr(net->tensors[i].name, "weight") ? 1.5 : 0.3);
  float *x = fmalloc((int64_t)B * a->obs_dim), *rr = fmalloc((int64_t)B * a->act_dim),
        *dx = fmalloc((int64_t)B * a->obs_dim);
  fill(x, (int64_t)B * a->obs_dim, &r, -1.5, 1.5);
  fill(rr, (int64_t)B * a->act_dim, &r, -1, 1);
  net_loss(net, w, x, rr, B);
  nn_zero_grad(net);
  cr_assert_eq(nn_backward_out(net, w, rr, dx, 1), 0, "%s", tk_errmsg());
  double wd = 0, q = 0;
  int64_t checked = 0;
  for (int64_t i = 0; i < net->n_params; i += stride) { /* padding between tensors has gradient 0 */
    const float keep = net->params[i];
    net->params[i] = keep + (float)H;
    const double lp = net_loss(net, w, x, rr, B);
    net->params[i] = keep - (float)H;
    const double lm = net_loss(net, w, x, rr, B);
    net->params[i] = keep;
    const double num = (lp - lm) / (2 * H), qq = check(net->grads[i], num, &wd);
    q = fmax(q, qq);
    checked++;
    cr_expect(qq <= 1, "parameter %lld: analytic %.6g, numeric %.6g", (long long)i, (double)net->grads[i],
              num);
  }
  for (int64_t i = 0; i < (int64_t)B * a->obs_dim; i++) {
    const float keep = x[i];
    x[i] = keep + (float)H;
    const double lp = net_loss(net, w, x, rr, B);
    x[i] = keep - (float)H;
    const double lm = net_loss(net, w, x, rr, B);
    x[i] = keep;
    const double num = (lp - lm) / (2 * H), qq = check(dx[i], num, &wd);
    q = fmax(q, qq);
    cr_expect(qq <= 1, "input %lld: analytic %.6g, numeric %.6g", (long long)i, (double)dx[i], num);
  }
  printf("fd unet (%d levels, %lld parameters, %lld checked, and the input): max |analytic - numeric| %.3g "
         "(worst ratio to the tolerance %.3f)\n",
         a->unet.levels, (long long)net->n_params, (long long)checked, wd, q);
  free(x);
  free(rr);
  free(dx);
  nn_work_free(w);
  nn_net_free(net);
}

Test(fd, unet) {
  const int d2[] = {8, 12}, d3[] = {4, 8, 8};
  nnArch a = unet_arch(2, d2, 3, 2, 8, 2, 3, 4);
  fd_unet(&a, 2, 5); /* every 5th parameter: every tensor is hit, each at several places */
  a = unet_arch(3, d3, 5, 2, 8, 3, 2, 6); /* two downsamples, two upsamples, residual convs */
  fd_unet(&a, 2, 11);
}

/* ConditionalUnet1D's state_dict: names and shapes; the JSON form; bad U-Nets refused with messages */
Test(unet, names_shapes_json_and_errors) {
  const int d[] = {64, 128, 256};
  nnArch a = unet_arch(3, d, 5, 8, 16, 7, 38, 32);
  nnNet plan;
  cr_assert_eq(nn_net_plan(&a, &plan), 0, "%s", tk_errmsg());
  static const struct {
    const char *name;
    int ndim;
    int64_t s0, s1, s2;
  } want[] = {
      {"diffusion_step_encoder.1.weight", 2, 128, 32, 0},
      {"diffusion_step_encoder.3.weight", 2, 32, 128, 0},
      {"down_modules.0.0.blocks.0.block.0.weight", 3, 64, 7, 5},
      {"down_modules.0.0.blocks.0.block.1.weight", 1, 64, 0, 0},
      {"down_modules.0.0.cond_encoder.1.weight", 2, 128, 70, 0},
      {"down_modules.0.0.residual_conv.weight", 3, 64, 7, 1},
      {"down_modules.0.2.conv.weight", 3, 64, 64, 3},
      {"down_modules.2.1.blocks.1.block.0.weight", 3, 256, 256, 5},
      {"mid_modules.1.cond_encoder.1.bias", 1, 512, 0, 0},
      {"up_modules.0.0.blocks.0.block.0.weight", 3, 128, 512, 5},
      {"up_modules.0.0.residual_conv.weight", 3, 128, 512, 1},
      {"up_modules.1.2.conv.weight", 3, 64, 64, 4},
      {"final_conv.0.block.0.weight", 3, 64, 64, 5},
      {"final_conv.1.weight", 3, 7, 64, 1},
  };
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    const nnTensor *t = nn_tensor_find(&plan, want[i].name);
    cr_assert(t, "no tensor %s", want[i].name);
    cr_expect(t->ndim == want[i].ndim && t->shape[0] == want[i].s0 && t->shape[1] == want[i].s1 &&
                  t->shape[2] == want[i].s2,
              "%s: ndim %d [%lld %lld %lld]", want[i].name, t->ndim, (long long)t->shape[0],
              (long long)t->shape[1], (long long)t->shape[2]);
  }
  cr_expect_null(nn_tensor_find(&plan, "down_modules.2.2.conv.weight"), "the last level has no downsample");
  cr_expect_null(nn_tensor_find(&plan, "down_modules.0.1.residual_conv.weight"));
  cr_expect_null(nn_tensor_find(&plan, "up_modules.2.0.blocks.0.block.0.weight"));
  int64_t total = 0;
  for (int i = 0; i < plan.n_tensors; i++)
    total += plan.tensors[i].numel;
  printf("unet 64,128,256 k5: %d tensors, %lld parameters\n", plan.n_tensors, (long long)total);
  char *js = NULL;
  cr_assert_eq(nn_arch_to_json(&a, &js), 0, "%s", tk_errmsg());
  cr_expect(
      strstr(js,
             "\"unet\":{\"down_dims\":[64,128,256],\"kernel\":5,\"groups\":8,\"horizon\":16,\"temb\":32}"),
      "%s", js);
  nnArch b;
  cr_assert_eq(nn_arch_from_json(js, &b), 0, "%s", tk_errmsg());
  cr_expect_eq(memcmp(&a.unet, &b.unet, sizeof a.unet), 0);
  free(js);
  static const struct {
    const char *json, *want;
  } bad[] = {
      {"\"unet\":{\"down_dims\":[64],\"kernel\":5,\"groups\":8,\"horizon\":16}", "exactly down_dims"},
      {"\"unet\":{\"down_dims\":[64],\"kernel\":5,\"groups\":8,\"horizon\":16,\"tmb\":32}",
       "has no \"temb\""},
      {"\"unet\":{\"down_dims\":[],\"kernel\":5,\"groups\":8,\"horizon\":16,\"temb\":32}", "down_dims"},
      {"\"unet\":{\"down_dims\":[60],\"kernel\":5,\"groups\":8,\"horizon\":16,\"temb\":32}",
       "multiple of the 8"},
      {"\"unet\":{\"down_dims\":[64],\"kernel\":4,\"groups\":8,\"horizon\":16,\"temb\":32}",
       "kernel 4 is not odd"},
      {"\"unet\":{\"down_dims\":[8,8,8,8],\"kernel\":3,\"groups\":8,\"horizon\":4,\"temb\":32}", "divisible"},
      {"\"unet\":[1]", "must be an object"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char j[1024];
    snprintf(j, sizeof j,
             "{\"format\":\"demokit.nn_arch\",\"version\":1,\"obs_dim\":182,\"act_dim\":112,\"hidden\":[],"
             "\"head\":\"mse\",%s}",
             bad[i].json);
    cr_expect_neq(nn_arch_from_json(j, &b), 0, "%s: accepted", bad[i].json);
    cr_expect(strstr(tk_errmsg(), bad[i].want) && !strchr(tk_errmsg(), '\n'), "%s: %s", bad[i].json,
              tk_errmsg());
  }
  const int d4[] = {8, 16, 32, 64}; /* the most levels: every node, value and tensor fits its table */
  nnArch a4 = unet_arch(4, d4, 15, 8, 64, 7, 40, 1024);
  cr_expect_eq(nn_net_plan(&a4, &plan), 0, "%s", tk_errmsg());
  printf("unet of 4 levels: %d nodes, %d values, %d tensors\n", plan.unet.n_nodes, plan.unet.n_vals,
         plan.n_tensors);
  a.n_hidden = 1;
  cr_expect_neq(nn_arch_validate(&a), 0);
  cr_expect(strstr(tk_errmsg(), "no hidden layers"), "%s", tk_errmsg());
}

/* A small U-Net fits a function of its conditioning and sample (loss down 10x with Adam) through nn_step on
 * a two-thread team, as bc-train trains it. */
Test(unet, trains) {
  const int d[] = {8, 16};
  nnArch a = unet_arch(2, d, 3, 4, 4, 2, 3, 4);
  nnNet *net = nn_net_make(&a, 3);
  nnWork *w = nn_work_make(net, 32);
  nnTeam *team = nn_team_make(net, 32, 2);
  cr_assert(net && w && team, "%s", tk_errmsg());
  nn_work_set_team(w, team);
  float *x = fmalloc(32 * a.obs_dim), *y = fmalloc(32 * a.act_dim);
  tkRng r;
  tk_rng_seed(&r, 4);
  nnAdamOpts o;
  nn_adam_default(&o);
  o.lr = 3e-3;
  float first = 0, loss = 0;
  for (int step = 0; step < 200; step++) {
    fill(x, 32 * a.obs_dim, &r, -1, 1);
    for (int b = 0; b < 32; b++)
      for (int j = 0; j < a.act_dim; j++) {
        const float *xr = x + b * a.obs_dim;
        y[b * a.act_dim + j] = 0.5f * sinf(2 * xr[j % 3]) + 0.3f * xr[3 + j] * xr[j % 3];
      }
    cr_assert_eq(nn_step(net, w, &o, x, y, 32, 1, &loss, NULL), 0, "%s", tk_errmsg());
    if (!step) first = loss;
  }
  printf("unet training: loss %.4g -> %.4g in 200 steps\n", (double)first, (double)loss);
  cr_expect(isfinite(loss) && loss < first / 10, "loss %g -> %g", (double)first, (double)loss);
  nn_team_free(team);
  nn_work_free(w);
  nn_net_free(net);
  free(x);
  free(y);
}
