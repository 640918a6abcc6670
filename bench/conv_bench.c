/* bench/conv_bench.c -- the vision anchor net's convolution stack: oneDNN against im2col + OpenBLAS.
 *
 * The stack is torch_vision_bc_baseline.py's encoder, per camera: 76x76x3 float crops ->
 *   conv 3->32 k3 s2 (76->37) -> conv 32->32 k3 s1 (->35) -> conv 32->64 k3 s2 (->17) -> conv 64->64 k3 s1
 * (->15)
 *   -> the spatial softmax's 1x1 conv 64->32 (15x15); no padding, with bias.
 * Two cameras, each with its own weights, batch B (64) each = 2B images per step. ReLU, the softmax and the
 * linear layers are not here (elementwise or small, the same cost whichever convolution runs).
 * A training step is the forward pass, then backward from a fixed gradient of the last output: the weight and
 * bias gradients of every layer and the data gradient of every layer but the first (the image needs none, as
 * in torch). Acting is the forward pass at batch 1 (two images), inference mode.
 *
 * Variants (each in 1 and 2 threads):
 *   blas        ours: NHWC, im2col (a K*C run per kernel row is contiguous in NHWC) + cblas_sgemm over a
 * chunk of images, col2im for the data gradient; the 1x1 conv is one GEMM; openblas_set_num_threads dnnl_any
 * oneDNN 2.6 (C API), format_tag_any: oneDNN picks activation and weight layouts; the reorders it then needs
 * (input NHWC -> its layout, weights for backward-data, diff_dst, diff_weights back to the forward weights'
 * layout for the optimizer) are inside the timed step; weights are kept in oneDNN's layout between steps
 * (Adam is elementwise), so their forward reorder is not timed dnnl_nchw   oneDNN with plain NCHW activations
 * and OIHW weights everywhere (torch's default layout) dnnl_nhwc   oneDNN with plain NHWC activations,
 * weights in oneDNN's layout (torch's channels_last); plain OHWI weights would leave only its reference
 * kernel (ref:any), ~1000x slower oneDNN on Debian runs on OpenMP: threads are set with omp_set_num_threads
 * before building and running. Every oneDNN variant is checked against ours on the same inputs, weights and
 * output gradient: max abs difference of the stack's output, of every data gradient, weight gradient and bias
 * gradient (printed with the largest magnitude of that quantity, for scale). GFLOP/s counts 2*MACs of the
 * convolutions (forward, weight gradient, data gradient of layers 2..5). Rounds alternate the variants (the
 * machine is shared); medians, min and max over --repeats windows. Prints name=value lines. Usage: conv_bench
 * [--seconds S] [--repeats R] [--batch B] [--chunk IMAGES] [--only SUBSTRING] [--no-act]
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>

#ifdef DK_HAVE_DNNL
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#endif

#include "bench_util.h"

/* OpenBLAS's own entry point (cblas.h of Debian's openblas declares it too; repeated for other cblas.h) */
void openblas_set_num_threads(int);

#define NL 5
#define CAMS 2
#define CROP 76

typedef struct {
  int cin, cout, k, s, hi, ho;
} Lay;
static Lay g_L[NL];

static void lay_init(void) {
  static const int spec[NL][4] = {
      {3, 32, 3, 2}, {32, 32, 3, 1}, {32, 64, 3, 2}, {64, 64, 3, 1}, {64, 32, 1, 1}};
  int h = CROP;
  for (int l = 0; l < NL; l++) {
    Lay L = {spec[l][0], spec[l][1], spec[l][2], spec[l][3], h, (h - spec[l][2]) / spec[l][3] + 1};
    g_L[l] = L;
    h = L.ho;
  }
}

static size_t act_size(int N, int l) { return (size_t)N * g_L[l].ho * g_L[l].ho * g_L[l].cout; }
static size_t in_size(int N, int l) { return (size_t)N * g_L[l].hi * g_L[l].hi * g_L[l].cin; }
static size_t w_size(int l) { return (size_t)g_L[l].cout * g_L[l].cin * g_L[l].k * g_L[l].k; }

/* 2*MACs per image */
static double conv_flops(int l) {
  const Lay *L = &g_L[l];
  return 2.0 * L->ho * L->ho * L->cout * L->cin * L->k * L->k;
}
static double flops_fwd(void) {
  double f = 0;
  for (int l = 0; l < NL; l++)
    f += conv_flops(l);
  return f;
}
static double flops_train(void) { return 3 * flops_fwd() - conv_flops(0); }

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static void *xmalloc(size_t n) {
  void *p = NULL;
  if (posix_memalign(&p, 64, n ? n : 64)) {
    fprintf(stderr, "conv_bench: out of memory\n");
    exit(1);
  }
  return p;
}

static unsigned long long g_rng = 88172645463325252ULL;
static float frand(void) { /* xorshift64, uniform [-1, 1) */
  g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
  return (float)((g_rng >> 40) * (1.0 / (1 << 23)) - 1.0);
}

/* one camera's data: input (both layouts), weights OIHW, bias, the output gradient (both layouts) */
typedef struct {
  int N;
  float *x_nhwc, *x_nchw, *dy_nhwc, *dy_nchw, *w[NL], *b[NL];
} Cam;

static void nhwc_to_nchw(const float *a, float *o, int N, int H, int C) {
  for (int n = 0; n < N; n++)
    for (int p = 0; p < H * H; p++)
      for (int c = 0; c < C; c++)
        o[((size_t)n * C + c) * H * H + p] = a[((size_t)n * H * H + p) * C + c];
}

static void cam_init(Cam *c, int N) {
  c->N = N;
  size_t nx = in_size(N, 0), ny = act_size(N, NL - 1);
  c->x_nhwc = xmalloc(nx * 4), c->x_nchw = xmalloc(nx * 4);
  c->dy_nhwc = xmalloc(ny * 4), c->dy_nchw = xmalloc(ny * 4);
  for (size_t i = 0; i < nx; i++)
    c->x_nhwc[i] = 0.5f + 0.5f * frand(); /* pixels /255 lie in [0, 1] */
  for (size_t i = 0; i < ny; i++)
    c->dy_nhwc[i] = frand() / (float)N;
  nhwc_to_nchw(c->x_nhwc, c->x_nchw, N, CROP, 3);
  nhwc_to_nchw(c->dy_nhwc, c->dy_nchw, N, g_L[NL - 1].ho, g_L[NL - 1].cout);
  for (int l = 0; l < NL; l++) {
    float sc = 1.0f / sqrtf((float)(g_L[l].cin * g_L[l].k * g_L[l].k)); /* torch's default init bound */
    c->w[l] = xmalloc(w_size(l) * 4), c->b[l] = xmalloc((size_t)g_L[l].cout * 4);
    for (size_t i = 0; i < w_size(l); i++)
      c->w[l][i] = sc * frand();
    for (int i = 0; i < g_L[l].cout; i++)
      c->b[l][i] = sc * frand();
  }
}

static void cam_free(Cam *c) {
  free(c->x_nhwc), free(c->x_nchw), free(c->dy_nhwc), free(c->dy_nchw);
  for (int l = 0; l < NL; l++)
    free(c->w[l]), free(c->b[l]);
}

/* ---------------------------------------------------------------- ours: im2col + OpenBLAS, NHWC */

typedef struct {
  int N, chunk;
  const Cam *cam;
  float *w[NL];   /* HWIO = row-major [k*k*cin][cout], the GEMM's B */
  float *act[NL]; /* outputs, NHWC */
  float *gin[NL]; /* gradient w.r.t. layer l's input (l >= 1), NHWC */
  float *dw[NL];  /* HWIO */
  float *db[NL];
  float *col, *dcol;
} Blas;

static void im2col(const Lay *L, const float *in, float *col) {
  int K = L->k, C = L->cin, kc = K * C;
  for (int oy = 0; oy < L->ho; oy++)
    for (int ox = 0; ox < L->ho; ox++) {
      float *r = col + ((size_t)oy * L->ho + ox) * K * kc;
      for (int ky = 0; ky < K; ky++)
        memcpy(r + ky * kc, in + ((size_t)(oy * L->s + ky) * L->hi + ox * L->s) * C, sizeof(float) * kc);
    }
}

static void col2im(const Lay *L, const float *dcol, float *din) {
  int K = L->k, C = L->cin, kc = K * C;
  memset(din, 0, sizeof(float) * L->hi * L->hi * C);
  for (int oy = 0; oy < L->ho; oy++)
    for (int ox = 0; ox < L->ho; ox++) {
      const float *r = dcol + ((size_t)oy * L->ho + ox) * K * kc;
      for (int ky = 0; ky < K; ky++) {
        float *d = din + ((size_t)(oy * L->s + ky) * L->hi + ox * L->s) * C;
        const float *s = r + ky * kc;
        for (int j = 0; j < kc; j++)
          d[j] += s[j];
      }
    }
}

static void blas_init(Blas *b, const Cam *c, int chunk) {
  memset(b, 0, sizeof *b);
  b->N = c->N, b->chunk = chunk < 1 ? 1 : chunk > c->N ? c->N : chunk, b->cam = c;
  size_t colmax = 0;
  for (int l = 0; l < NL; l++) {
    const Lay *L = &g_L[l];
    size_t kk = (size_t)L->k * L->k;
    b->w[l] = xmalloc(w_size(l) * 4), b->dw[l] = xmalloc(w_size(l) * 4);
    b->db[l] = xmalloc((size_t)L->cout * 4);
    for (int o = 0; o < L->cout; o++) /* OIHW -> HWIO */
      for (int i = 0; i < L->cin; i++)
        for (size_t p = 0; p < kk; p++)
          b->w[l][(p * L->cin + i) * L->cout + o] = c->w[l][(o * L->cin + i) * kk + p];
    b->act[l] = xmalloc(act_size(b->N, l) * 4);
    b->gin[l] = l ? xmalloc(in_size(b->N, l) * 4) : NULL;
    size_t cs = (size_t)b->chunk * L->ho * L->ho * kk * L->cin;
    if (L->k > 1 && cs > colmax) colmax = cs;
  }
  b->col = xmalloc(colmax * 4), b->dcol = xmalloc(colmax * 4);
}

static void blas_free(Blas *b) {
  for (int l = 0; l < NL; l++)
    free(b->w[l]), free(b->dw[l]), free(b->db[l]), free(b->act[l]), free(b->gin[l]);
  free(b->col), free(b->dcol);
}

static void blas_fwd(Blas *b) {
  for (int l = 0; l < NL; l++) {
    const Lay *L = &g_L[l];
    const float *in = l ? b->act[l - 1] : b->cam->x_nhwc;
    int hw = L->ho * L->ho, kkc = L->k * L->k * L->cin;
    size_t rows = (size_t)b->N * hw;
    for (size_t r = 0; r < rows; r++)
      memcpy(b->act[l] + r * L->cout, b->cam->b[l], sizeof(float) * L->cout);
    if (L->k == 1) {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, L->cout, L->cin, 1, in, L->cin,
                  b->w[l], L->cout, 1, b->act[l], L->cout);
      continue;
    }
    for (int n0 = 0; n0 < b->N; n0 += b->chunk) {
      int nc = b->N - n0 < b->chunk ? b->N - n0 : b->chunk;
      for (int i = 0; i < nc; i++)
        im2col(L, in + (n0 + i) * (size_t)L->hi * L->hi * L->cin, b->col + (size_t)i * hw * kkc);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nc * hw, L->cout, kkc, 1, b->col, kkc, b->w[l],
                  L->cout, 1, b->act[l] + (size_t)n0 * hw * L->cout, L->cout);
    }
  }
}

static void blas_bwd(Blas *b) {
  for (int l = NL - 1; l >= 0; l--) {
    const Lay *L = &g_L[l];
    const float *in = l ? b->act[l - 1] : b->cam->x_nhwc;
    const float *dout = l == NL - 1 ? b->cam->dy_nhwc : b->gin[l + 1];
    int hw = L->ho * L->ho, kkc = L->k * L->k * L->cin, ihw = L->hi * L->hi * L->cin;
    size_t rows = (size_t)b->N * hw;
    memset(b->db[l], 0, sizeof(float) * L->cout);
    for (size_t r = 0; r < rows; r++)
      for (int c = 0; c < L->cout; c++)
        b->db[l][c] += dout[r * L->cout + c];
    if (L->k == 1) {
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, L->cin, L->cout, (int)rows, 1, in, L->cin, dout,
                  L->cout, 0, b->dw[l], L->cout);
      if (l)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, L->cin, L->cout, 1, dout, L->cout,
                    b->w[l], L->cout, 0, b->gin[l], L->cin);
      continue;
    }
    for (int n0 = 0; n0 < b->N; n0 += b->chunk) {
      int nc = b->N - n0 < b->chunk ? b->N - n0 : b->chunk;
      const float *dc = dout + (size_t)n0 * hw * L->cout;
      for (int i = 0; i < nc; i++)
        im2col(L, in + (size_t)(n0 + i) * ihw, b->col + (size_t)i * hw * kkc);
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, kkc, L->cout, nc * hw, 1, b->col, kkc, dc, L->cout,
                  n0 ? 1 : 0, b->dw[l], L->cout);
      if (l) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nc * hw, kkc, L->cout, 1, dc, L->cout, b->w[l],
                    L->cout, 0, b->dcol, kkc);
        for (int i = 0; i < nc; i++)
          col2im(L, b->dcol + (size_t)i * hw * kkc, b->gin[l] + (size_t)(n0 + i) * ihw);
      }
    }
  }
}

/* ---------------------------------------------------------------- oneDNN */

#ifdef DK_HAVE_DNNL
#define DN(call)                                                                                             \
  do {                                                                                                       \
    dnnl_status_t st_ = (call);                                                                              \
    if (st_ != dnnl_success) {                                                                               \
      fprintf(stderr, "conv_bench: %s:%d: %s failed (dnnl status %d)\n", __FILE__, __LINE__, #call,          \
              (int)st_);                                                                                     \
      exit(1);                                                                                               \
    }                                                                                                        \
  } while (0)

enum { M_ANY, M_NCHW, M_NHWC };
static const char *mode_name[] = {"any", "nchw", "nhwc"};

typedef struct {
  dnnl_primitive_t p;
  int n;
  dnnl_exec_arg_t a[8];
} Op;

#define MAXOPS 64
typedef struct {
  dnnl_engine_t eng;
  dnnl_stream_t st;
  const Cam *cam;
  int mode, training;
  Op fwd[MAXOPS], bwd[MAXOPS];
  int nf, nb, nreorder;
  dnnl_primitive_t prims[2 * MAXOPS];
  int np;
  dnnl_memory_t mems[4 * MAXOPS];
  int nm;
  dnnl_memory_t out, w[NL], b[NL], dw[NL], db[NL], gin[NL];
  char impl[NL][3][48]; /* forward, backward-weights, backward-data implementation names */
} Dn;

static dnnl_memory_t dn_mem(Dn *d, const dnnl_memory_desc_t *md, void *handle) {
  dnnl_memory_t m;
  DN(dnnl_memory_create(&m, md, d->eng, handle ? handle : DNNL_MEMORY_ALLOCATE));
  d->mems[d->nm++] = m;
  return m;
}

static void dn_push(Dn *d, int bwd, dnnl_primitive_t p, int n, const int *args, const dnnl_memory_t *m) {
  Op *o = bwd ? &d->bwd[d->nb++] : &d->fwd[d->nf++];
  o->p = p, o->n = n;
  for (int i = 0; i < n; i++)
    o->a[i].arg = args[i], o->a[i].memory = m[i];
  d->prims[d->np++] = p;
}

static dnnl_primitive_t dn_reorder_prim(Dn *d, const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to) {
  dnnl_primitive_desc_t pd;
  dnnl_primitive_t p;
  DN(dnnl_reorder_primitive_desc_create(&pd, from, d->eng, to, d->eng, NULL));
  DN(dnnl_primitive_create(&p, pd));
  DN(dnnl_primitive_desc_destroy(pd));
  return p;
}

static const dnnl_memory_desc_t *dn_desc(dnnl_memory_t m) {
  const dnnl_memory_desc_t *md;
  DN(dnnl_memory_get_memory_desc(m, &md));
  return md;
}

/* m's content in layout `want`: m itself when it already is, else a new memory filled by a reorder that is
 * appended to the forward or backward list (so it is timed) */
static dnnl_memory_t dn_as(Dn *d, int bwd, dnnl_memory_t m, const dnnl_memory_desc_t *want) {
  if (dnnl_memory_desc_equal(dn_desc(m), want)) return m;
  dnnl_memory_t o = dn_mem(d, want, NULL);
  int args[2] = {DNNL_ARG_FROM, DNNL_ARG_TO};
  dnnl_memory_t ms[2] = {m, o};
  dn_push(d, bwd, dn_reorder_prim(d, dn_desc(m), want), 2, args, ms);
  d->nreorder++;
  return o;
}

/* one reorder now, untimed (setup and checks) */
static void dn_copy(Dn *d, dnnl_memory_t from, dnnl_memory_t to) {
  dnnl_primitive_t p = dn_reorder_prim(d, dn_desc(from), dn_desc(to));
  dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
  DN(dnnl_primitive_execute(p, d->st, 2, a));
  DN(dnnl_stream_wait(d->st));
  DN(dnnl_primitive_destroy(p));
}

static void dn_md(dnnl_memory_desc_t *md, int nd, int64_t d0, int64_t d1, int64_t d2, int64_t d3,
                  dnnl_format_tag_t tag) {
  dnnl_dims_t dims = {d0, d1, d2, d3};
  DN(dnnl_memory_desc_init_by_tag(md, nd, dims, dnnl_f32, tag));
}

static void dn_impl(char *dst, const_dnnl_primitive_desc_t pd) {
  const char *s = "?";
  dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &s);
  snprintf(dst, 48, "%s", s);
}

static dnnl_primitive_t dn_prim(const_dnnl_primitive_desc_t pd) {
  dnnl_primitive_t p;
  DN(dnnl_primitive_create(&p, pd));
  return p;
}

/* builds one camera's forward (and, when training, backward) op lists; the caller has set the OpenMP threads
 */
static void dn_build(Dn *d, const Cam *c, int mode, int training) {
  memset(d, 0, sizeof *d);
  d->cam = c, d->mode = mode, d->training = training;
  DN(dnnl_engine_create(&d->eng, dnnl_cpu, 0));
  DN(dnnl_stream_create(&d->st, d->eng, dnnl_stream_default_flags));
  int N = c->N;
  dnnl_format_tag_t dt = mode == M_ANY ? dnnl_format_tag_any : mode == M_NCHW ? dnnl_nchw : dnnl_nhwc;
  /* NHWC with plain OHWI weights has only oneDNN's reference kernel (ref:any, ~1000x slower, measured at
   * batch 4); torch's channels_last leaves the weights to oneDNN too */
  dnnl_format_tag_t wt = mode == M_NCHW ? dnnl_oihw : dnnl_format_tag_any;
  dnnl_memory_desc_t md, wmd, bmd, dmd;
  /* the input as the crop would deliver it: NHWC, or NCHW for the NCHW variant */
  dn_md(&md, 4, N, 3, CROP, CROP, mode == M_NCHW ? dnnl_nchw : dnnl_nhwc);
  dnnl_memory_t cur = dn_mem(d, &md, mode == M_NCHW ? c->x_nchw : c->x_nhwc);
  dnnl_primitive_desc_t fpd[NL];
  dnnl_memory_t in[NL];
  for (int l = 0; l < NL; l++) {
    const Lay *L = &g_L[l];
    dnnl_dims_t strides = {L->s, L->s}, pad = {0, 0};
    dnnl_memory_desc_t smd = *dn_desc(cur);
    if (l == 0) dn_md(&smd, 4, N, L->cin, L->hi, L->hi, dt); /* let oneDNN choose the first layer's too */
    dn_md(&wmd, 4, L->cout, L->cin, L->k, L->k, wt);
    dn_md(&bmd, 1, L->cout, 0, 0, 0, dnnl_a);
    dn_md(&dmd, 4, N, L->cout, L->ho, L->ho, dt);
    dnnl_convolution_desc_t cd;
    DN(dnnl_convolution_forward_desc_init(&cd, training ? dnnl_forward_training : dnnl_forward_inference,
                                          dnnl_convolution_direct, &smd, &wmd, &bmd, &dmd, strides, pad,
                                          pad));
    DN(dnnl_primitive_desc_create(&fpd[l], &cd, NULL, d->eng, NULL));
    dn_impl(d->impl[l][0], fpd[l]);
    in[l] = dn_as(d, 0, cur, dnnl_primitive_desc_query_md(fpd[l], dnnl_query_src_md, 0));
    dnnl_memory_desc_t umd;
    dn_md(&umd, 4, L->cout, L->cin, L->k, L->k, dnnl_oihw);
    dnnl_memory_t wu = dn_mem(d, &umd, c->w[l]);
    d->w[l] = dn_mem(d, dnnl_primitive_desc_query_md(fpd[l], dnnl_query_weights_md, 0), NULL);
    dn_copy(d, wu, d->w[l]); /* weights live in the forward primitive's layout */
    d->b[l] = dn_mem(d, &bmd, c->b[l]);
    dnnl_memory_t out = dn_mem(d, dnnl_primitive_desc_query_md(fpd[l], dnnl_query_dst_md, 0), NULL);
    int args[4] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_BIAS, DNNL_ARG_DST};
    dnnl_memory_t ms[4] = {in[l], d->w[l], d->b[l], out};
    dn_push(d, 0, dn_prim(fpd[l]), 4, args, ms);
    cur = out;
  }
  d->out = cur;
  if (training) {
    const Lay *L = &g_L[NL - 1];
    dn_md(&md, 4, N, L->cout, L->ho, L->ho, mode == M_NCHW ? dnnl_nchw : dnnl_nhwc);
    dnnl_memory_t gout = dn_mem(d, &md, mode == M_NCHW ? c->dy_nchw : c->dy_nhwc);
    for (int l = NL - 1; l >= 0; l--) {
      L = &g_L[l];
      dnnl_dims_t strides = {L->s, L->s}, pad = {0, 0};
      dnnl_memory_desc_t smd;
      dn_md(&smd, 4, N, L->cin, L->hi, L->hi, dt);
      dn_md(&wmd, 4, L->cout, L->cin, L->k, L->k, wt);
      dn_md(&bmd, 1, L->cout, 0, 0, 0, dnnl_a);
      dn_md(&dmd, 4, N, L->cout, L->ho, L->ho, dt);
      dnnl_convolution_desc_t cd;
      dnnl_primitive_desc_t pd;
      DN(dnnl_convolution_backward_weights_desc_init(&cd, dnnl_convolution_direct, &smd, &wmd, &bmd, &dmd,
                                                     strides, pad, pad));
      DN(dnnl_primitive_desc_create(&pd, &cd, NULL, d->eng, fpd[l]));
      dn_impl(d->impl[l][1], pd);
      dnnl_memory_t s = dn_as(d, 1, in[l], dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0));
      dnnl_memory_t dd = dn_as(d, 1, gout, dnnl_primitive_desc_query_md(pd, dnnl_query_diff_dst_md, 0));
      dnnl_memory_t dwm = dn_mem(d, dnnl_primitive_desc_query_md(pd, dnnl_query_diff_weights_md, 0), NULL);
      d->db[l] = dn_mem(d, &bmd, NULL);
      int args[4] = {DNNL_ARG_SRC, DNNL_ARG_DIFF_DST, DNNL_ARG_DIFF_WEIGHTS, DNNL_ARG_DIFF_BIAS};
      dnnl_memory_t ms[4] = {s, dd, dwm, d->db[l]};
      dn_push(d, 1, dn_prim(pd), 4, args, ms);
      DN(dnnl_primitive_desc_destroy(pd));
      d->dw[l] = dn_as(d, 1, dwm, dn_desc(d->w[l])); /* the optimizer updates w with dw: same layout */
      if (l == 0) break;
      dnnl_memory_desc_t gmd = smd;
      DN(dnnl_convolution_backward_data_desc_init(&cd, dnnl_convolution_direct, &gmd, &wmd, &dmd, strides,
                                                  pad, pad));
      DN(dnnl_primitive_desc_create(&pd, &cd, NULL, d->eng, fpd[l]));
      dn_impl(d->impl[l][2], pd);
      dnnl_memory_t wm = dn_as(d, 1, d->w[l], dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0));
      dd = dn_as(d, 1, gout, dnnl_primitive_desc_query_md(pd, dnnl_query_diff_dst_md, 0));
      d->gin[l] = dn_mem(d, dnnl_primitive_desc_query_md(pd, dnnl_query_diff_src_md, 0), NULL);
      int a2[3] = {DNNL_ARG_DIFF_DST, DNNL_ARG_WEIGHTS, DNNL_ARG_DIFF_SRC};
      dnnl_memory_t m2[3] = {dd, wm, d->gin[l]};
      dn_push(d, 1, dn_prim(pd), 3, a2, m2);
      DN(dnnl_primitive_desc_destroy(pd));
      gout = d->gin[l];
    }
  }
  for (int l = 0; l < NL; l++)
    DN(dnnl_primitive_desc_destroy(fpd[l]));
}

static void dn_run(Dn *d, const Op *ops, int n) {
  for (int i = 0; i < n; i++)
    DN(dnnl_primitive_execute(ops[i].p, d->st, ops[i].n, ops[i].a));
  DN(dnnl_stream_wait(d->st));
}

static void dn_free(Dn *d) {
  for (int i = 0; i < d->np; i++)
    dnnl_primitive_destroy(d->prims[i]);
  for (int i = 0; i < d->nm; i++)
    dnnl_memory_destroy(d->mems[i]);
  dnnl_stream_destroy(d->st);
  dnnl_engine_destroy(d->eng);
}

/* a oneDNN tensor read out into a plain buffer: NHWC for activations (nd 4), plain for biases (nd 1) */
static void dn_read(Dn *d, dnnl_memory_t m, int nd, int64_t d0, int64_t d1, int64_t d2, int64_t d3,
                    float *out) {
  dnnl_memory_desc_t md;
  dn_md(&md, nd, d0, d1, d2, d3, nd == 1 ? dnnl_a : dnnl_nhwc);
  dn_copy(d, m, dn_mem(d, &md, out));
}
#endif

/* ---------------------------------------------------------------- timing */

typedef struct {
  const char *name;
  int kind; /* 0 blas, 1 dnnl */
  int mode, threads, act;
  Blas bl[CAMS];
#ifdef DK_HAVE_DNNL
  Dn dn[CAMS];
#endif
  double *rate;
  int nrate;
} Var;

static void set_threads(const Var *v) {
  openblas_set_num_threads(v->kind == 0 ? v->threads : 1);
#ifdef DK_HAVE_DNNL
  omp_set_num_threads(v->kind == 1 ? v->threads : 1);
#endif
}

static void var_step(Var *v) {
  for (int c = 0; c < CAMS; c++) {
    if (v->kind == 0) {
      blas_fwd(&v->bl[c]);
      if (!v->act) blas_bwd(&v->bl[c]);
    }
#ifdef DK_HAVE_DNNL
    else {
      dn_run(&v->dn[c], v->dn[c].fwd, v->dn[c].nf);
      if (!v->act) dn_run(&v->dn[c], v->dn[c].bwd, v->dn[c].nb);
    }
#endif
  }
}

/* steps per second over a window of at least `seconds` */
static double var_window(Var *v, double seconds) {
  set_threads(v);
  var_step(v); /* warm: caches, thread teams */
  double t0 = now(), t;
  long steps = 0;
  do {
    var_step(v);
    steps++;
    t = now() - t0;
  } while (t < seconds);
  return steps / t;
}

/* ---------------------------------------------------------------- checks */

typedef struct {
  double diff, scale;
} Dev;

static Dev dev(const float *a, const float *b, size_t n) {
  Dev d = {0, 0};
  for (size_t i = 0; i < n; i++) {
    double e = fabs((double)a[i] - b[i]);
    if (e > d.diff || e != e) d.diff = e;
    if (fabs(a[i]) > d.scale) d.scale = fabs(a[i]);
  }
  return d;
}

#ifdef DK_HAVE_DNNL
/* ours against oneDNN after one step of each, on every camera: output, data, weight and bias gradients */
static void check(const char *name, Var *ours, Var *v) {
  Dev out = {0, 0}, gin = {0, 0}, dw = {0, 0}, db = {0, 0};
  for (int c = 0; c < CAMS; c++) {
    Blas *b = &ours->bl[c];
    Dn *d = &v->dn[c];
    int N = b->N;
    const Lay *L = &g_L[NL - 1];
    float *buf = xmalloc(in_size(N, 1) * 4 + act_size(N, 0) * 4);
    dn_read(d, d->out, 4, N, L->cout, L->ho, L->ho, buf);
    Dev e = dev(b->act[NL - 1], buf, act_size(N, NL - 1));
    out.diff = fmax(out.diff, e.diff), out.scale = fmax(out.scale, e.scale);
    for (int l = 0; l < NL && !v->act; l++) {
      L = &g_L[l];
      if (l) {
        dn_read(d, d->gin[l], 4, N, L->cin, L->hi, L->hi, buf);
        e = dev(b->gin[l], buf, in_size(N, l));
        gin.diff = fmax(gin.diff, e.diff), gin.scale = fmax(gin.scale, e.scale);
      }
      /* weights: OIHW dims read out as HWIO ("cdba" of oihw) */
      dnnl_memory_desc_t md;
      dn_md(&md, 4, L->cout, L->cin, L->k, L->k, dnnl_hwio);
      dnnl_memory_t u = dn_mem(d, &md, buf);
      dn_copy(d, d->dw[l], u);
      e = dev(b->dw[l], buf, w_size(l));
      dw.diff = fmax(dw.diff, e.diff), dw.scale = fmax(dw.scale, e.scale);
      dn_read(d, d->db[l], 1, L->cout, 0, 0, 0, buf);
      e = dev(b->db[l], buf, (size_t)L->cout);
      db.diff = fmax(db.diff, e.diff), db.scale = fmax(db.scale, e.scale);
    }
    free(buf);
  }
  printf("check_%s_out_maxabs_diff=%.3g\ncheck_%s_out_maxabs=%.3g\n", name, out.diff, name, out.scale);
  if (!v->act)
    printf("check_%s_dx_maxabs_diff=%.3g\ncheck_%s_dx_maxabs=%.3g\n"
           "check_%s_dw_maxabs_diff=%.3g\ncheck_%s_dw_maxabs=%.3g\n"
           "check_%s_db_maxabs_diff=%.3g\ncheck_%s_db_maxabs=%.3g\n",
           name, gin.diff, name, gin.scale, name, dw.diff, name, dw.scale, name, db.diff, name, db.scale);
}
#endif

static void run_set(const char *tag, Var *vars, int nv, int N, int repeats, double seconds, int act) {
  for (int r = 0; r < repeats; r++)
    for (int i = 0; i < nv; i++) {
      /* alternate the order each round too, so no variant always runs after the same neighbour */
      int j = r % 2 ? nv - 1 - i : i;
      vars[j].rate[vars[j].nrate++] = var_window(&vars[j], seconds);
      fprintf(stderr, "conv_bench: %s %s round %d: %.1f steps/s\n", tag, vars[j].name, r,
              vars[j].rate[vars[j].nrate - 1]);
    }
  double fl = (act ? flops_fwd() : flops_train()) * CAMS * N;
  for (int i = 0; i < nv; i++) {
    Var *v = &vars[i];
    qsort(v->rate, v->nrate, sizeof(double), cmp_d);
    double med =
        v->nrate % 2 ? v->rate[v->nrate / 2] : 0.5 * (v->rate[v->nrate / 2 - 1] + v->rate[v->nrate / 2]);
    printf("%s_%s_samples_per_s=%.1f\n%s_%s_samples_per_s_min=%.1f\n%s_%s_samples_per_s_max=%.1f\n"
           "%s_%s_ms_per_step=%.3f\n%s_%s_gflops=%.1f\n",
           tag, v->name, med * N, tag, v->name, v->rate[0] * N, tag, v->name, v->rate[v->nrate - 1] * N, tag,
           v->name, 1e3 / med, tag, v->name, fl * med * 1e-9);
  }
}

/* the variants of one set: blas t1,t2, then oneDNN any/nchw/nhwc x t1,t2 */
static int make_vars(Var *vars, Cam *cams, int chunk, int act, const char *only, int repeats) {
  static char names[16][32];
  static int nn = 0;
  int nv = 0;
  for (int kind = 0; kind < 2; kind++)
    for (int mode = 0; mode < (kind ? 3 : 1); mode++)
      for (int t = 1; t <= 2; t++) {
#ifndef DK_HAVE_DNNL
        if (kind) continue;
#endif
        char *nm = names[nn++ % 16];
        if (kind == 0) snprintf(nm, 32, "blas_t%d", t);
#ifdef DK_HAVE_DNNL
        else
          snprintf(nm, 32, "dnnl_%s_t%d", mode_name[mode], t);
#endif
        if (only && !strstr(nm, only) && kind) continue; /* ours is the reference: always built */
        Var *v = &vars[nv++];
        memset(v, 0, sizeof *v);
        v->name = nm, v->kind = kind, v->mode = mode, v->threads = t, v->act = act;
        v->rate = calloc((size_t)repeats, sizeof(double));
        set_threads(v);
        for (int c = 0; c < CAMS; c++) {
          if (kind == 0) blas_init(&v->bl[c], &cams[c], chunk);
#ifdef DK_HAVE_DNNL
          else
            dn_build(&v->dn[c], &cams[c], mode, !act);
#endif
        }
      }
  return nv;
}

static void free_vars(Var *vars, int nv) {
  for (int i = 0; i < nv; i++) {
    for (int c = 0; c < CAMS; c++) {
      if (vars[i].kind == 0) blas_free(&vars[i].bl[c]);
#ifdef DK_HAVE_DNNL
      else
        dn_free(&vars[i].dn[c]);
#endif
    }
    free(vars[i].rate);
  }
}

static void bench_set(const char *tag, int N, int chunk, int act, const char *only, int repeats,
                      double seconds) {
  Cam cams[CAMS];
  for (int c = 0; c < CAMS; c++)
    cam_init(&cams[c], N);
  Var vars[8];
  int nv = make_vars(vars, cams, chunk, act, only, repeats);
  /* one step each, then the checks against ours (vars[0], blas_t1) */
  for (int i = 0; i < nv; i++) {
    set_threads(&vars[i]);
    var_step(&vars[i]);
  }
#ifdef DK_HAVE_DNNL
  for (int i = 1; i < nv; i++) {
    char nm[64];
    snprintf(nm, sizeof nm, "%s_%s", tag, vars[i].name);
    if (vars[i].kind == 1) {
      check(nm, &vars[0], &vars[i]);
      if (vars[i].threads == 1) {
        Dn *d = &vars[i].dn[0];
        for (int l = 0; l < NL; l++)
          printf("%s_impl_l%d=%s%s%s%s%s\n", nm, l + 1, d->impl[l][0], act ? "" : ",",
                 act ? "" : d->impl[l][1], act || !l ? "" : ",", act || !l ? "" : d->impl[l][2]);
        printf("%s_reorders_per_camera=%d\n", nm, d->nreorder);
      }
    }
  }
#endif
  run_set(tag, vars, nv, N, repeats, seconds, act);
  free_vars(vars, nv);
  for (int c = 0; c < CAMS; c++)
    cam_free(&cams[c]);
}

int main(int argc, char **argv) {
  double seconds = 2.0;
  int repeats = 5, batch = 64, chunk = 1, do_act = 1;
  const char *only = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
      seconds = atof(argv[++i]);
    else if (!strcmp(argv[i], "--repeats") && i + 1 < argc)
      repeats = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--batch") && i + 1 < argc)
      batch = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--chunk") && i + 1 < argc)
      chunk = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--only") && i + 1 < argc)
      only = argv[++i];
    else if (!strcmp(argv[i], "--no-act"))
      do_act = 0;
    else {
      fprintf(stderr,
              "usage: conv_bench [--seconds S] [--repeats R] [--batch B] [--chunk IMAGES] [--only SUBSTRING] "
              "[--no-act]\n");
      return 2;
    }
  }
  if (seconds <= 0 || repeats < 1 || batch < 1) return 2;
  lay_init();
  printf(
      "net=vision_anchor_convs cams=%d batch=%d crop=%d im2col_chunk=%d seconds_per_window=%.2f repeats=%d\n",
      CAMS, batch, CROP, chunk, seconds, repeats);
  printf("mflop_per_image_forward=%.2f\nmflop_per_image_train=%.2f\n", flops_fwd() * 1e-6,
         flops_train() * 1e-6);
#ifdef DK_HAVE_DNNL
  const dnnl_version_t *ver = dnnl_version();
  printf("dnnl_version=%d.%d.%d\ndnnl_cpu_runtime=%s\n", ver->major, ver->minor, ver->patch,
         ver->cpu_runtime == DNNL_RUNTIME_OMP ? "openmp" : "other");
#else
  printf("dnnl=missing\n");
#endif
  bench_set("train", batch, chunk, 0, only, repeats, seconds);
  if (do_act) bench_set("act", 1, 1, 1, only, repeats, seconds / 4);
  return 0;
}
