/* nn/nn_conv.c -- the conv layer on oneDNN 2.6 (C API), single-threaded per work.
 *
 * Per batch size, each conv layer gets a forward-training primitive with format_tag_any for weights and
 * output (oneDNN picks its blocked layouts: bench/conv_bench.c measured that 2x faster than plain NCHW),
 * backward-weights, and backward-data unless it is the first layer. Parameters stay in torch's layout
 * (weight OIHW, bias [out]); each call reorders the weights into the primitive's layout (~63k floats for
 * the anchor encoder) and the weight gradient back to OIHW. The input is taken in the layout the
 * previous layer left (a plain one is reordered if the primitive wants another); the output is left in
 * the primitive's layout for the next layer (nn_enc.c reorders at plain-input layers). Every primitive
 * runs with a user scratchpad allocated when it is made, so nothing allocates while one runs. */
#include <oneapi/dnnl/dnnl_debug.h>
#include <stdlib.h>
#include <string.h>

#include "nn_internal.h"

struct nnConv {
  int64_t wnumel, out;
  dnnl_memory_desc_t wuser; /* OIHW, as the parameters are stored */
  nnDnnOp x_fwd;            /* the input's layout -> xs (the forward's source layout); p NULL if equal */
  nnDnnOp w_fwd;            /* OIHW -> wf; p NULL if the forward takes OIHW */
  nnDnnOp fwd;              /* SRC, WEIGHTS, BIAS, DST */
  nnDnnOp bw_x;   /* the forward's source -> bwx (backward-weights' source layout); p NULL if equal */
  nnDnnOp bw_dy;  /* dy -> bwdy (backward-weights' output-gradient layout); p NULL if equal */
  nnDnnOp bww;    /* SRC, DIFF_DST, DIFF_WEIGHTS, DIFF_BIAS */
  nnDnnOp dw_out; /* dwb -> OIHW; p NULL if backward-weights writes OIHW */
  int want_dx;
  nnDnnOp w_bwd;  /* OIHW -> wb; p NULL if backward-data takes OIHW */
  nnDnnOp bd_dy;  /* dy -> bddy (backward-data's output-gradient layout); p NULL if equal */
  nnDnnOp bwd;    /* DIFF_DST, WEIGHTS, DIFF_SRC */
  nnDnnOp dx_out; /* dxs -> the input's layout; p NULL if equal */
  float *xs, *wf, *bwx, *bwdy, *dwb, *dbias, *wb, *bddy, *dxs; /* owned, sized by oneDNN's layouts */
};

int nn_dnn_status(dnnl_status_t st, const char *what) {
  if (st == dnnl_success) return 0;
  return tk_error(st == dnnl_out_of_memory ? TK_ENOMEM : TK_EIO, "nn enc: oneDNN %s failed: %s", what,
                  dnnl_status2str(st));
}

#define DN(call, what)                                                                                       \
  do {                                                                                                       \
    if ((rc = nn_dnn_status((call), (what)))) goto fail;                                                     \
  } while (0)

static float *dn_alloc(const dnnl_memory_desc_t *md) {
  size_t n = (dnnl_memory_desc_get_size(md) + 63) / 64 * 64;
  float *p = aligned_alloc(64, n ? n : 64);
  if (p) memset(p, 0, n ? n : 64);
  return p;
}

/* a memory of layout md on the op's argument list (handle NULL: set before each run) */
static int op_arg(nnEncWork *w, nnDnnOp *op, int arg, const dnnl_memory_desc_t *md, void *handle) {
  dnnl_memory_t m;
  int rc = nn_dnn_status(dnnl_memory_create(&m, md, w->eng, handle ? handle : DNNL_MEMORY_NONE), "memory");
  if (rc) return rc;
  op->a[op->n].arg = arg;
  op->a[op->n].memory = m;
  op->n++;
  return 0;
}

/* the primitive of pd, with its scratchpad (allocated now) on the argument list */
static int op_prim(nnEncWork *w, const_dnnl_primitive_desc_t pd, nnDnnOp *op, const char *what) {
  int rc = nn_dnn_status(dnnl_primitive_create(&op->p, pd), what);
  if (rc) return rc;
  const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
  if (smd && dnnl_memory_desc_get_size(smd) > 0) {
    op->scratch = dn_alloc(smd);
    if (!op->scratch) return tk_error(TK_ENOMEM, "nn enc: %s: out of memory for its scratchpad", what);
    rc = op_arg(w, op, DNNL_ARG_SCRATCHPAD, smd, op->scratch);
  }
  return rc;
}

static dnnl_primitive_attr_t user_scratchpad(void) {
  dnnl_primitive_attr_t a = NULL;
  if (dnnl_primitive_attr_create(&a) != dnnl_success) return NULL;
  if (dnnl_primitive_attr_set_scratchpad_mode(a, dnnl_scratchpad_mode_user) != dnnl_success) {
    dnnl_primitive_attr_destroy(a);
    return NULL;
  }
  return a;
}

void nn_dnn_op_free(nnDnnOp *op) {
  if (op->p) dnnl_primitive_destroy(op->p);
  for (int k = 0; k < op->n; k++)
    dnnl_memory_destroy(op->a[k].memory);
  free(op->scratch);
  memset(op, 0, sizeof *op);
}

static void op_set(nnEncWork *w, nnDnnOp *op, int arg, const void *ptr) {
  for (int k = 0; k < op->n; k++)
    if (op->a[k].arg == arg) {
      dnnl_status_t st = dnnl_memory_set_data_handle_v2(op->a[k].memory, (void *)ptr, w->st);
      if (st != dnnl_success && w->err == dnnl_success) w->err = st;
      return;
    }
}

static void op_run(nnEncWork *w, nnDnnOp *op) {
  dnnl_status_t st = dnnl_primitive_execute(op->p, w->st, op->n, op->a);
  if (st != dnnl_success && w->err == dnnl_success) w->err = st;
}

int nn_dnn_reorder_make(nnEncWork *w, const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to,
                        nnDnnOp *op) {
  memset(op, 0, sizeof *op);
  if (dnnl_memory_desc_equal(from, to)) return 0;
  dnnl_primitive_attr_t attr = user_scratchpad();
  if (!attr) return tk_error(TK_ENOMEM, "nn enc: oneDNN attribute: out of memory");
  dnnl_primitive_desc_t pd = NULL;
  int rc = nn_dnn_status(dnnl_reorder_primitive_desc_create(&pd, from, w->eng, to, w->eng, attr), "reorder");
  dnnl_primitive_attr_destroy(attr);
  if (!rc) rc = op_prim(w, pd, op, "reorder");
  if (!rc) rc = op_arg(w, op, DNNL_ARG_FROM, from, NULL);
  if (!rc) rc = op_arg(w, op, DNNL_ARG_TO, to, NULL);
  if (pd) dnnl_primitive_desc_destroy(pd);
  if (rc) nn_dnn_op_free(op);
  return rc;
}

void nn_dnn_reorder_run(nnEncWork *w, nnDnnOp *op, const void *from, void *to) {
  op_set(w, op, DNNL_ARG_FROM, from);
  op_set(w, op, DNNL_ARG_TO, to);
  op_run(w, op);
}

int nn_dnn_plain_md(dnnl_memory_desc_t *md, int B, const nnShape *s) {
  dnnl_dims_t d = {B, s->d[0], s->d[1], s->d[2]};
  return nn_dnn_status(dnnl_memory_desc_init_by_tag(md, 4, d, dnnl_f32, dnnl_nchw), "memory descriptor");
}

void nn_conv_free(nnConv *c) {
  if (!c) return;
  nnDnnOp *ops[] = {&c->x_fwd,  &c->w_fwd, &c->fwd,   &c->bw_x, &c->bw_dy, &c->bww,
                    &c->dw_out, &c->w_bwd, &c->bd_dy, &c->bwd,  &c->dx_out};
  for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++)
    nn_dnn_op_free(ops[k]);
  free(c->xs), free(c->wf), free(c->bwx), free(c->bwdy), free(c->dwb), free(c->dbias), free(c->wb),
      free(c->bddy);
  free(c->dxs);
  free(c);
}

/* a buffer of layout md owned by c (NULL with tk_error on failure) */
static float *own(const dnnl_memory_desc_t *md, const char *what) {
  float *p = dn_alloc(md);
  if (!p) tk_error(TK_ENOMEM, "nn enc: out of memory for a convolution's %s", what);
  return p;
}

int nn_conv_make(nnEncWork *w, const nnEnc *e, int i, int B, const nnActLayout *in, nnActLayout *out,
                 int64_t cap, int want_dx, nnConv **res) {
  const nnLayerSpec *s = &e->arch.layer[i];
  const nnShape *si = &e->shape[i], *so = &e->shape[i + 1];
  int rc = 0;
  dnnl_primitive_attr_t attr = NULL;
  dnnl_primitive_desc_t fpd = NULL, wpd = NULL, dpd = NULL;
  nnConv *c = calloc(1, sizeof *c);
  if (!c) return tk_error(TK_ENOMEM, "nn enc: out of memory");
  c->want_dx = want_dx;
  c->out = s->out;
  c->wnumel = (int64_t)s->out * si->d[0] * s->kernel * s->kernel;
  attr = user_scratchpad();
  if (!attr) {
    rc = tk_error(TK_ENOMEM, "nn enc: oneDNN attribute: out of memory");
    goto fail;
  }
  dnnl_dims_t sd = {B, si->d[0], si->d[1], si->d[2]}, dd = {B, so->d[0], so->d[1], so->d[2]};
  dnnl_dims_t wd = {s->out, si->d[0], s->kernel, s->kernel}, bd = {s->out};
  dnnl_dims_t strides = {s->stride, s->stride}, pad = {s->pad, s->pad};
  /* every layout left to oneDNN (format_tag_any), then reorders where two primitives disagree: asking for
   * the previous layer's layout instead can leave only the reference kernel (ref:any: 8-channel blocks,
   * the first layer's backward-weights on a plain 5-channel input) */
  dnnl_memory_desc_t src, wany, bmd, dany;
  DN(dnnl_memory_desc_init_by_tag(&src, 4, sd, dnnl_f32, dnnl_format_tag_any), "memory descriptor");
  DN(dnnl_memory_desc_init_by_tag(&wany, 4, wd, dnnl_f32, dnnl_format_tag_any), "memory descriptor");
  DN(dnnl_memory_desc_init_by_tag(&c->wuser, 4, wd, dnnl_f32, dnnl_oihw), "memory descriptor");
  DN(dnnl_memory_desc_init_by_tag(&bmd, 1, bd, dnnl_f32, dnnl_a), "memory descriptor");
  DN(dnnl_memory_desc_init_by_tag(&dany, 4, dd, dnnl_f32, dnnl_format_tag_any), "memory descriptor");

  /* forward */
  dnnl_convolution_desc_t cd;
  DN(dnnl_convolution_forward_desc_init(&cd, dnnl_forward_training, dnnl_convolution_direct, &src, &wany,
                                        &bmd, &dany, strides, pad, pad),
     "convolution forward descriptor");
  DN(dnnl_primitive_desc_create(&fpd, &cd, attr, w->eng, NULL), "convolution forward");
  const dnnl_memory_desc_t *fsrc = dnnl_primitive_desc_query_md(fpd, dnnl_query_src_md, 0);
  const dnnl_memory_desc_t *fw = dnnl_primitive_desc_query_md(fpd, dnnl_query_weights_md, 0);
  const dnnl_memory_desc_t *fdst = dnnl_primitive_desc_query_md(fpd, dnnl_query_dst_md, 0);
  dnnl_memory_desc_t plain;
  if ((rc = nn_dnn_plain_md(&plain, B, so))) goto fail;
  out->md = *fdst;
  out->plain = dnnl_memory_desc_equal(fdst, &plain);
  out->floats = (int64_t)(dnnl_memory_desc_get_size(fdst) / sizeof(float));
  if (out->floats > cap) {
    rc = tk_error(TK_EINVAL,
                  "nn enc: layer %d (conv): oneDNN's output layout takes %lld floats at batch %d, more than "
                  "the %lld planned",
                  i, (long long)out->floats, B, (long long)cap);
    goto fail;
  }
  if ((rc = nn_dnn_reorder_make(w, &in->md, fsrc, &c->x_fwd))) goto fail;
  if (c->x_fwd.p && !(c->xs = own(fsrc, "input"))) goto nomem;
  if ((rc = nn_dnn_reorder_make(w, &c->wuser, fw, &c->w_fwd))) goto fail;
  if (c->w_fwd.p && !(c->wf = own(fw, "weights"))) goto nomem;
  if ((rc = op_prim(w, fpd, &c->fwd, "convolution forward"))) goto fail;
  if ((rc = op_arg(w, &c->fwd, DNNL_ARG_SRC, fsrc, NULL)) ||
      (rc = op_arg(w, &c->fwd, DNNL_ARG_WEIGHTS, fw, NULL)) ||
      (rc = op_arg(w, &c->fwd, DNNL_ARG_BIAS, &bmd, NULL)) ||
      (rc = op_arg(w, &c->fwd, DNNL_ARG_DST, fdst, NULL)))
    goto fail;

  /* backward weights */
  DN(dnnl_convolution_backward_weights_desc_init(&cd, dnnl_convolution_direct, &src, &wany, &bmd, &dany,
                                                 strides, pad, pad),
     "convolution backward-weights descriptor");
  DN(dnnl_primitive_desc_create(&wpd, &cd, attr, w->eng, fpd), "convolution backward-weights");
  const dnnl_memory_desc_t *dwmd = dnnl_primitive_desc_query_md(wpd, dnnl_query_diff_weights_md, 0);
  const dnnl_memory_desc_t *wsrc = dnnl_primitive_desc_query_md(wpd, dnnl_query_src_md, 0);
  const dnnl_memory_desc_t *wdy = dnnl_primitive_desc_query_md(wpd, dnnl_query_diff_dst_md, 0);
  if ((rc = nn_dnn_reorder_make(w, fsrc, wsrc, &c->bw_x))) goto fail;
  if (c->bw_x.p && !(c->bwx = own(wsrc, "backward source"))) goto nomem;
  if ((rc = nn_dnn_reorder_make(w, fdst, wdy, &c->bw_dy))) goto fail;
  if (c->bw_dy.p && !(c->bwdy = own(wdy, "output gradient"))) goto nomem;
  if ((rc = nn_dnn_reorder_make(w, dwmd, &c->wuser, &c->dw_out))) goto fail;
  if (c->dw_out.p && !(c->dwb = own(dwmd, "weight gradient"))) goto nomem;
  if (!(c->dbias = own(&bmd, "bias gradient"))) goto nomem;
  if ((rc = op_prim(w, wpd, &c->bww, "convolution backward-weights"))) goto fail;
  if ((rc = op_arg(w, &c->bww, DNNL_ARG_SRC, wsrc, NULL)) ||
      (rc = op_arg(w, &c->bww, DNNL_ARG_DIFF_DST, wdy, NULL)) ||
      (rc = op_arg(w, &c->bww, DNNL_ARG_DIFF_WEIGHTS, dwmd, NULL)) ||
      (rc = op_arg(w, &c->bww, DNNL_ARG_DIFF_BIAS, &bmd, c->dbias)))
    goto fail;

  /* backward data, its input gradient reordered into the input's layout if they differ */
  if (want_dx) {
    DN(dnnl_convolution_backward_data_desc_init(&cd, dnnl_convolution_direct, &src, &wany, &dany, strides,
                                                pad, pad),
       "convolution backward-data descriptor");
    DN(dnnl_primitive_desc_create(&dpd, &cd, attr, w->eng, fpd), "convolution backward-data");
    const dnnl_memory_desc_t *bw = dnnl_primitive_desc_query_md(dpd, dnnl_query_weights_md, 0);
    const dnnl_memory_desc_t *dsm = dnnl_primitive_desc_query_md(dpd, dnnl_query_diff_src_md, 0);
    const dnnl_memory_desc_t *ddy = dnnl_primitive_desc_query_md(dpd, dnnl_query_diff_dst_md, 0);
    if ((rc = nn_dnn_reorder_make(w, &c->wuser, bw, &c->w_bwd))) goto fail;
    if (c->w_bwd.p && !(c->wb = own(bw, "backward weights"))) goto nomem;
    if ((rc = nn_dnn_reorder_make(w, fdst, ddy, &c->bd_dy))) goto fail;
    if (c->bd_dy.p && !(c->bddy = own(ddy, "output gradient"))) goto nomem;
    if ((rc = nn_dnn_reorder_make(w, dsm, &in->md, &c->dx_out))) goto fail;
    if (c->dx_out.p && !(c->dxs = own(dsm, "input gradient"))) goto nomem;
    if ((rc = op_prim(w, dpd, &c->bwd, "convolution backward-data"))) goto fail;
    if ((rc = op_arg(w, &c->bwd, DNNL_ARG_DIFF_DST, ddy, NULL)) ||
        (rc = op_arg(w, &c->bwd, DNNL_ARG_WEIGHTS, bw, NULL)) ||
        (rc = op_arg(w, &c->bwd, DNNL_ARG_DIFF_SRC, dsm, NULL)))
      goto fail;
  }
  dnnl_primitive_desc_destroy(fpd);
  dnnl_primitive_desc_destroy(wpd);
  if (dpd) dnnl_primitive_desc_destroy(dpd);
  dnnl_primitive_attr_destroy(attr);
  *res = c;
  return 0;
nomem:
  rc = TK_ENOMEM;
fail:
  if (fpd) dnnl_primitive_desc_destroy(fpd);
  if (wpd) dnnl_primitive_desc_destroy(wpd);
  if (dpd) dnnl_primitive_desc_destroy(dpd);
  if (attr) dnnl_primitive_attr_destroy(attr);
  nn_conv_free(c);
  *res = NULL;
  return rc;
}

void nn_conv_forward(const nnLayerCall *c) {
  nnConv *v = c->sz->conv[c->i];
  nnEncWork *w = c->w;
  const void *src = c->x, *wt = c->W;
  if (v->x_fwd.p) {
    nn_dnn_reorder_run(w, &v->x_fwd, c->x, v->xs);
    src = v->xs;
  }
  if (v->w_fwd.p) {
    nn_dnn_reorder_run(w, &v->w_fwd, c->W, v->wf);
    wt = v->wf;
  }
  op_set(w, &v->fwd, DNNL_ARG_SRC, src);
  op_set(w, &v->fwd, DNNL_ARG_WEIGHTS, wt);
  op_set(w, &v->fwd, DNNL_ARG_BIAS, c->b);
  op_set(w, &v->fwd, DNNL_ARG_DST, c->y);
  op_run(w, &v->fwd);
}

void nn_conv_backward(const nnLayerCall *c) {
  nnConv *v = c->sz->conv[c->i];
  nnEncWork *w = c->w;
  const void *src = v->x_fwd.p ? (const void *)v->xs : (const void *)c->x, *dy = c->dy;
  if (v->bw_x.p) {
    nn_dnn_reorder_run(w, &v->bw_x, src, v->bwx);
    src = v->bwx;
  }
  if (v->bw_dy.p) {
    nn_dnn_reorder_run(w, &v->bw_dy, c->dy, v->bwdy);
    dy = v->bwdy;
  }
  float *dwt = c->accumulate ? w->tmpw : c->dW; /* the OIHW weight gradient */
  op_set(w, &v->bww, DNNL_ARG_SRC, src);
  op_set(w, &v->bww, DNNL_ARG_DIFF_DST, dy);
  op_set(w, &v->bww, DNNL_ARG_DIFF_WEIGHTS, v->dw_out.p ? v->dwb : dwt);
  op_run(w, &v->bww);
  if (v->dw_out.p) nn_dnn_reorder_run(w, &v->dw_out, v->dwb, dwt);
  if (c->accumulate) {
    for (int64_t k = 0; k < v->wnumel; k++)
      c->dW[k] += dwt[k];
    for (int64_t k = 0; k < v->out; k++)
      c->db[k] += v->dbias[k];
  } else {
    memcpy(c->db, v->dbias, sizeof(float) * (size_t)v->out);
  }
  if (!c->dx || !v->want_dx) return;
  const void *wt = c->W;
  if (v->w_bwd.p) {
    nn_dnn_reorder_run(w, &v->w_bwd, c->W, v->wb);
    wt = v->wb;
  }
  dy = c->dy;
  if (v->bd_dy.p) {
    nn_dnn_reorder_run(w, &v->bd_dy, c->dy, v->bddy);
    dy = v->bddy;
  }
  op_set(w, &v->bwd, DNNL_ARG_DIFF_DST, dy);
  op_set(w, &v->bwd, DNNL_ARG_WEIGHTS, wt);
  op_set(w, &v->bwd, DNNL_ARG_DIFF_SRC, v->dx_out.p ? (void *)v->dxs : (void *)c->dx);
  op_run(w, &v->bwd);
  if (v->dx_out.p) nn_dnn_reorder_run(w, &v->dx_out, v->dxs, c->dx);
}
