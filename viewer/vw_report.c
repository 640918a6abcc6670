/* viewer/vw_report.c -- the report page of a run: one self-contained HTML file (the plots inline as
 * base64 data: URIs) from the files the tools wrote: the dataset (through the dataset module), bc-train's
 * policy, metrics and plots, bc-eval's JSON and rl-finetune's comparison. Every input is read and checked
 * before anything is written; the page is built in memory and written by temp file, fsync and rename. */
#include <cairo.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bc.h"
#include "rl.h"
#include "vw.h"

#define PATH_MAX_ 4200
#define CSV_MAX_BYTES (64u << 20) /* a metrics CSV: far below this */
#define JSON_MAX_BYTES (1u << 20) /* bc-eval's JSON: one line */
#define PNG_MAX_BYTES (64u << 20) /* a plot: tens of kB */
#define MAX_RUNS 8                /* runs in one rl-finetune CSV (--compare: 2) */
#define MAX_EVALS 4096            /* evaluations of one run kept */

void vw_report_default(vwReportOpts *o) {
  memset(o, 0, sizeof *o);
  o->dir = ".";
  o->target = 0.95;
}

/* ---- the page in memory (a tkStr; the escaping and base64 below are the page's own) ---------- */

/* A string from a file or the command line, HTML-escaped (text and attribute values alike). */
static void sb_esc(tkStr *b, const char *s) {
  for (; s && *s; s++) {
    switch (*s) {
    case '&': tk_str_puts(b, "&amp;"); break;
    case '<': tk_str_puts(b, "&lt;"); break;
    case '>': tk_str_puts(b, "&gt;"); break;
    case '"': tk_str_puts(b, "&quot;"); break;
    case '\'': tk_str_puts(b, "&#39;"); break;
    default: tk_str_put(b, s, 1);
    }
  }
}

static void sb_b64(tkStr *b, const unsigned char *d, size_t n) {
  static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  char *o = tk_str_reserve(b, (n + 2) / 3 * 4);
  if (!o) return;
  size_t i = 0;
  for (; i + 2 < n; i += 3) {
    unsigned v = (unsigned)d[i] << 16 | (unsigned)d[i + 1] << 8 | d[i + 2];
    *o++ = t[v >> 18 & 63], *o++ = t[v >> 12 & 63], *o++ = t[v >> 6 & 63], *o++ = t[v & 63];
  }
  if (i < n) {
    unsigned v = (unsigned)d[i] << 16 | (i + 1 < n ? (unsigned)d[i + 1] << 8 : 0);
    *o++ = t[v >> 18 & 63], *o++ = t[v >> 12 & 63];
    *o++ = i + 1 < n ? t[v >> 6 & 63] : '=';
    *o++ = '=';
  }
  b->n = (size_t)(o - b->p);
  b->p[b->n] = 0;
}

/* "<p class="missing">what</p>" for a piece that is not there */
static void sb_missing(tkStr *b, const char *what, const char *path, const char *hint) {
  tk_str_puts(b, "<p class=\"missing\">");
  sb_esc(b, what);
  tk_str_puts(b, ": <code>");
  sb_esc(b, path);
  tk_str_puts(b, "</code> not found");
  if (hint) {
    tk_str_puts(b, " (");
    sb_esc(b, hint);
    tk_str_puts(b, ")");
  }
  tk_str_puts(b, ".</p>\n");
}

static void sb_row(tkStr *b, const char *name, const char *value_html) {
  tk_str_printf(b, "<tr><th>%s</th><td>%s</td></tr>\n", name, value_html);
}

static void size_text(int64_t bytes, char *buf, size_t n) {
  if (bytes >= (int64_t)1 << 30)
    snprintf(buf, n, "%.1f GiB", (double)bytes / (1 << 30));
  else if (bytes >= (int64_t)1 << 20)
    snprintf(buf, n, "%.1f MiB", (double)bytes / (1 << 20));
  else if (bytes >= 1024)
    snprintf(buf, n, "%.1f KiB", (double)bytes / 1024);
  else
    snprintf(buf, n, "%lld bytes", (long long)bytes);
}

/* ---- inputs -------------------------------------------------------------------------------------- */
/* path = dir/name, or the given one */
static int in_path(char *buf, const char *given, const char *dir, const char *name) {
  if (given) return tk_copy_name(buf, PATH_MAX_, given, "path");
  if (tk_snprintf(buf, PATH_MAX_, "%s/%s", dir, name))
    return tk_error(TK_ERANGE, "%s/%s: path too long", dir, name);
  return 0;
}

/* stem + suffix, stem = path without a final ".h5" */
static int stem_path(char *buf, const char *path, const char *suffix) {
  size_t l = strlen(path);
  int k = (int)(l > 3 && !strcmp(path + l - 3, ".h5") ? l - 3 : l);
  if (tk_snprintf(buf, PATH_MAX_, "%.*s%s", k, path, suffix))
    return tk_error(TK_ERANGE, "%s: path too long", path);
  return 0;
}

/* A PNG read whole and decoded (so a damaged one is refused, not shown broken). */
typedef struct {
  unsigned char *data;
  size_t n;
  int w, h;
} png;

typedef struct {
  const unsigned char *d;
  size_t n, at;
} pngRead;

static cairo_status_t png_read(void *closure, unsigned char *out, unsigned int len) {
  pngRead *r = closure;
  if (r->n - r->at < len) return CAIRO_STATUS_READ_ERROR;
  memcpy(out, r->d + r->at, len);
  r->at += len;
  return CAIRO_STATUS_SUCCESS;
}

static int png_load(const char *path, png *p) {
  memset(p, 0, sizeof *p);
  char *d;
  size_t n;
  int rc = tk_read_text_max(path, PNG_MAX_BYTES, &d, &n);
  if (rc) return rc;
  static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (n < 8 || memcmp(d, sig, 8)) {
    free(d);
    return tk_error(TK_EFORMAT, "%s: not a PNG image (no PNG signature)", path);
  }
  pngRead r = {(const unsigned char *)d, n, 0};
  cairo_surface_t *s = cairo_image_surface_create_from_png_stream(png_read, &r);
  cairo_status_t st = cairo_surface_status(s);
  int w = st == CAIRO_STATUS_SUCCESS ? cairo_image_surface_get_width(s) : 0;
  int h = st == CAIRO_STATUS_SUCCESS ? cairo_image_surface_get_height(s) : 0;
  cairo_surface_destroy(s);
  if (st != CAIRO_STATUS_SUCCESS || w <= 0 || h <= 0) {
    free(d);
    return tk_error(TK_EFORMAT, "%s: a damaged PNG image (%s)", path,
                    st != CAIRO_STATUS_SUCCESS ? cairo_status_to_string(st) : "no pixels");
  }
  p->data = (unsigned char *)d;
  p->n = n;
  p->w = w;
  p->h = h;
  return 0;
}

/* A CSV with a header row; every field kept as text. */
typedef struct {
  char *text;
  int ncols, nrows;
  char **cell; /* nrows x ncols, row-major (row 0: the header) */
} csv;

static void csv_free(csv *c) {
  free(c->text);
  free(c->cell);
  memset(c, 0, sizeof *c);
}

static int csv_load(const char *path, csv *c) {
  memset(c, 0, sizeof *c);
  size_t n;
  int rc = tk_read_text_max(path, CSV_MAX_BYTES, &c->text, &n);
  if (rc) return rc;
  if (memchr(c->text, 0, n)) {
    csv_free(c);
    return tk_error(TK_EFORMAT, "%s: not a CSV text file (a NUL byte)", path);
  }
  int lines = 0;
  for (size_t i = 0; i < n; i++)
    lines += c->text[i] == '\n';
  lines++;
  char *save = NULL, *line = strtok_r(c->text, "\n", &save);
  if (!line) {
    csv_free(c);
    return tk_error(TK_EFORMAT, "%s: empty (no header row)", path);
  }
  c->ncols = 1;
  for (const char *s = line; *s; s++)
    c->ncols += *s == ',';
  c->cell = calloc((size_t)lines * (size_t)c->ncols, sizeof(char *));
  if (!c->cell) {
    csv_free(c);
    return tk_error(TK_ENOMEM, "out of memory");
  }
  for (int row = 0; line; row++, line = strtok_r(NULL, "\n", &save)) {
    size_t l = strlen(line);
    if (l && line[l - 1] == '\r') line[l - 1] = 0;
    int k = 0;
    for (char *f = line;; k++) {
      char *comma = strchr(f, ',');
      if (k < c->ncols) c->cell[(size_t)row * (size_t)c->ncols + (size_t)k] = f;
      if (!comma) break;
      *comma = 0;
      f = comma + 1;
    }
    if (k + 1 != c->ncols) {
      int have = k + 1, want = c->ncols;
      csv_free(c);
      return tk_error(TK_EFORMAT, "%s: row %d has %d fields, the header %d", path, row + 1, have, want);
    }
    c->nrows = row + 1;
  }
  return 0;
}

static const char *cell(const csv *c, int row, int col) {
  return c->cell[(size_t)row * (size_t)c->ncols + (size_t)col];
}

static int csv_col(const csv *c, const char *name) {
  for (int k = 0; k < c->ncols; k++)
    if (!strcmp(cell(c, 0, k), name)) return k;
  return -1;
}

/* The columns a reader needs, or an error naming the file and the first one absent. */
static int csv_need(const csv *c, const char *path, const char *const *names, int *cols, int n) {
  for (int i = 0; i < n; i++)
    if ((cols[i] = csv_col(c, names[i])) < 0)
      return tk_error(TK_EFORMAT, "%s: no \"%s\" column in the header (%s)", path, names[i],
                      "not the metrics file expected");
  return 0;
}

/* A number field: "nan" (no value) allowed, anything else must parse whole. */
static int csv_num(const csv *c, const char *path, int row, int col, double *v) {
  const char *s = cell(c, row, col);
  if (!strcmp(s, "nan") || !strcmp(s, "-nan") || !*s) {
    *v = NAN;
    return 0;
  }
  char *end;
  errno = 0;
  *v = strtod(s, &end);
  if (end == s || *end || errno || isinf(*v))
    return tk_error(TK_EFORMAT, "%s: row %d: \"%s\" is not a number (column %s)", path, row + 1, s,
                    cell(c, 0, col));
  return 0;
}

/* ---- the dataset ----------------------------------------------------------------------------------- */
static int section_dataset(tkStr *b, tkStr *v, const char *path, char *task_out, size_t task_n) {
  tk_str_puts(b, "<section id=\"dataset\"><h2>Dataset</h2>\n");
  if (!tk_file_exists(path)) {
    sb_missing(b, "No dataset", path, "teleop --out writes it");
    tk_str_puts(b, "</section>\n");
    return 1;
  }
  dsFile *f;
  int rc = ds_open(path, 0, &f);
  if (rc) return rc;
  const dsSchema *s = ds_schema(f);
  int nd = ds_num_demos(f);
  dsDemoStats st;
  ds_demo_stats(f, &st);
  const int64_t mn = st.min_len, mx = st.max_len;
  const int succ = st.successes, known = st.known;
  snprintf(task_out, task_n, "%s", ds_env_name(f));
  char t[512];
  tk_str_puts(b, "<table>\n");
  tk_str_reset(v);
  tk_str_puts(v, "<code>");
  sb_esc(v, path);
  size_text(tk_file_size(path), t, sizeof t);
  tk_str_printf(v, "</code>, %s", t);
  tk_str_puts(v, ds_is_native(f) ? " (demokit format, robomimic layout)"
                                 : " (robomimic layout, written by another tool)");
  sb_row(b, "file", tk_str_get(v));
  tk_str_reset(v);
  sb_esc(v, ds_env_name(f));
  sb_row(b, "task", tk_str_get(v));
  tk_str_reset(v);
  tk_str_printf(v, "<b>%d</b>", nd);
  sb_row(b, "demos", tk_str_get(v));
  tk_str_reset(v);
  if (known)
    tk_str_printf(v, "<b>%d</b> of %d (%.0f%%)%s", succ, known, 100.0 * succ / known,
                  known < nd ? " (the others do not say)" : "");
  else
    tk_str_puts(v, "not recorded");
  sb_row(b, "successes", tk_str_get(v));
  tk_str_reset(v);
  tk_str_printf(v, "<b>%lld</b>", (long long)ds_total_samples(f));
  if (nd)
    tk_str_printf(v, " (per demo: min %lld, mean %.1f, max %lld)", (long long)mn,
                  (double)ds_total_samples(f) / nd, (long long)mx);
  sb_row(b, "steps", tk_str_get(v));
  { /* the rate, devices and operators of the demos (the distinct values) */
    double hz = nd ? ds_demo(f, 0)->control_hz : 0;
    int same_hz = 1;
    for (int i = 1; i < nd; i++)
      same_hz &= ds_demo(f, i)->control_hz == hz;
    tk_str_reset(v);
    if (!nd || hz <= 0)
      tk_str_puts(v, "not recorded");
    else
      tk_str_printf(v, "%g Hz%s", hz, same_hz ? "" : " (the first demo's; others differ)");
    sb_row(b, "control rate", tk_str_get(v));
    for (int which = 0; which < 2; which++) {
      tk_str_reset(v);
      for (int i = 0; i < nd; i++) {
        const char *x = which ? ds_demo(f, i)->operator_name : ds_demo(f, i)->device;
        int seen = 0;
        for (int j = 0; j < i && !seen; j++)
          seen = !strcmp(x, which ? ds_demo(f, j)->operator_name : ds_demo(f, j)->device);
        if (seen || !x[0]) continue;
        if (v->n) tk_str_puts(v, ", ");
        sb_esc(v, x);
      }
      if (!v->n) tk_str_puts(v, "not recorded");
      sb_row(b, which ? "operator" : "device", tk_str_get(v));
    }
  }
  for (int img = 0; img < 2; img++) {
    tk_str_reset(v);
    for (int k = 0; k < s->nkeys; k++) {
      const dsKeySpec *key = &s->keys[k];
      if (ds_key_is_image(key) != img) continue;
      if (v->n) tk_str_puts(v, ", ");
      tk_str_puts(v, "<code>");
      sb_esc(v, key->name);
      tk_str_puts(v, "</code> ");
      if (img)
        tk_str_printf(v, "%lldx%lld", (long long)key->shape[0], (long long)key->shape[1]);
      else {
        tk_str_puts(v, "(");
        for (int i = 0; i < key->rank; i++)
          tk_str_printf(v, i ? ",%lld" : "%lld", (long long)key->shape[i]);
        tk_str_puts(v, ")");
      }
    }
    if (!v->n) tk_str_puts(v, "none");
    sb_row(b, img ? "cameras" : "observation keys", tk_str_get(v));
  }
  tk_str_reset(v);
  tk_str_printf(v, "%d", s->action_dim);
  if (s->state_dim) tk_str_printf(v, "; simulator states: %d", s->state_dim);
  sb_row(b, "action size", tk_str_get(v));
  if (ds_num_masks(f)) {
    tk_str_reset(v);
    for (int m = 0; m < ds_num_masks(f) && !rc; m++) {
      int *pos = NULL, n = 0;
      if ((rc = ds_mask(f, ds_mask_name(f, m), &pos, &n))) break;
      free(pos);
      if (m) tk_str_puts(v, ", ");
      sb_esc(v, ds_mask_name(f, m));
      tk_str_printf(v, " %d", n);
    }
    sb_row(b, "masks (demos)", tk_str_get(v));
  }
  tk_str_puts(b, "</table>\n</section>\n");
  ds_close(f);
  if (!rc && (b->oom || v->oom)) rc = tk_error(TK_ENOMEM, "out of memory");
  return rc;
}

/* ---- behavior cloning ------------------------------------------------------------------------------ */
static void sb_figure(tkStr *b, const char *id, const png *p, const char *path, const char *caption) {
  tk_str_printf(b, "<figure><img id=\"%s\" width=\"%d\" height=\"%d\" alt=\"", id, p->w, p->h);
  sb_esc(b, path);
  tk_str_puts(b, "\" src=\"data:image/png;base64,");
  sb_b64(b, p->data, p->n);
  tk_str_puts(b, "\"><figcaption>");
  tk_str_puts(b, caption);
  tk_str_puts(b, " (<code>");
  sb_esc(b, path);
  tk_str_puts(b, "</code>)</figcaption></figure>\n");
}

static const char *json_str(const cJSON *j, const char *key) {
  const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, key);
  return cJSON_IsString(x) ? x->valuestring : NULL;
}

static int json_num(const cJSON *j, const char *key, double *v) {
  const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, key);
  if (!cJSON_IsNumber(x) || !isfinite(x->valuedouble)) return 0;
  *v = x->valuedouble;
  return 1;
}

static void describe_policy(tkStr *v, const bcPolicy *p) {
  if (p->base) { /* rl-finetune's residual: the frozen base, then the correction */
    describe_policy(v, p->base);
    tk_str_printf(v, "; a residual actor (MLP %d-%d) corrects it by up to %g", p->arch.hidden[0],
                  p->arch.hidden[1], p->residual_scale);
    return;
  }
  const nnArch *a = &p->arch;
  if (p->dif.horizon > 0)
    tk_str_printf(v, "Diffusion Policy (horizon %d, %d executed per plan), denoiser ", p->dif.horizon,
                  p->dif.exec);
  if (a->rnn_layers > 0) tk_str_printf(v, "LSTM %dx%d, then ", a->rnn_layers, a->rnn_hidden);
  tk_str_puts(v, "MLP ");
  for (int i = 0; i < a->n_hidden; i++)
    tk_str_printf(v, i ? "-%d" : "%d", a->hidden[i]);
  tk_str_printf(v, " %s%s, %s head%s", nn_activation_name(a->activation), a->layer_norm ? " + LayerNorm" : "",
                nn_head_name(a->head), a->tanh && a->head != NN_HEAD_GAUSSIAN ? " (tanh)" : "");
  if (a->head == NN_HEAD_GMM) tk_str_printf(v, ", %d modes", a->gmm_modes);
  if (p->chunk > 1 && p->dif.horizon == 0) tk_str_printf(v, ", %d actions per step", p->chunk);
}

/* A bc-eval --json result as a headline (label: "bc-eval"), or a line saying it is missing. */
static int eval_headline(tkStr *b, const char *eval_path, const char *label, const char *task,
                         const char *policy_path, int *missing) {
  int rc;
  if (!tk_file_exists(eval_path)) {
    sb_missing(b, "No bc-eval result", eval_path, "bc-eval POLICY --json > FILE writes it");
    ++*missing;
    return 0;
  }
  char *text;
  size_t n;
  if ((rc = tk_read_text_max(eval_path, JSON_MAX_BYTES, &text, &n))) return rc;
  cJSON *j = cJSON_ParseWithLength(text, n);
  free(text);
  double ep = 0, sc = 0, rate = 0, len = 0, seed = 0;
  static const char *const need[] = {"episodes", "successes", "success_rate", "mean_length", "seed"};
  double *dst[] = {&ep, &sc, &rate, &len, &seed};
  if (!cJSON_IsObject(j)) {
    int parsed = j != NULL;
    cJSON_Delete(j);
    return tk_error(TK_EFORMAT, "%s: %s (bc-eval --json writes one JSON object)", eval_path,
                    parsed ? "not a JSON object" : "not valid JSON");
  }
  for (int i = 0; i < (int)TK_ARRAY_LEN(need); i++)
    if (!json_num(j, need[i], dst[i])) {
      cJSON_Delete(j);
      return tk_error(TK_EFORMAT, "%s: no number \"%s\" (not bc-eval --json's output)", eval_path, need[i]);
    }
  if (ep < 1 || sc < 0 || sc > ep || ep != floor(ep) || sc != floor(sc)) {
    cJSON_Delete(j);
    return tk_error(TK_EFORMAT, "%s: %g successes of %g episodes", eval_path, sc, ep);
  }
  double sl = NAN, mr = NAN, sr = NAN;
  json_num(j, "std_length", &sl);
  json_num(j, "mean_return", &mr);
  json_num(j, "std_return", &sr);
  tk_str_puts(b, "<p class=\"headline\">");
  sb_esc(b, label);
  tk_str_printf(b, ": <b>%.0f%%</b> success (%.0f of %.0f held-out episodes, seeds %.0f..%.0f)",
                100 * sc / ep, sc, ep, seed, seed + ep - 1);
  tk_str_printf(b, ", mean length <b>%.1f</b>", len);
  if (isfinite(sl)) tk_str_printf(b, " &plusmn; %.1f", sl);
  tk_str_puts(b, " steps");
  if (isfinite(mr)) tk_str_printf(b, ", mean return %.2f", mr);
  if (isfinite(sr)) tk_str_printf(b, " &plusmn; %.2f", sr);
  const char *jt = json_str(j, "task"), *jp = json_str(j, "policy");
  if (jt && task[0] && strcmp(jt, task)) {
    tk_str_puts(b, " (on task ");
    sb_esc(b, jt);
    tk_str_puts(b, ", not the dataset's)");
  }
  tk_str_puts(b, ".");
  if (jp && tk_file_exists(jp) && tk_file_exists(policy_path) && !ds_same_file(jp, policy_path)) {
    tk_str_puts(b, " It evaluated <code>");
    sb_esc(b, jp);
    tk_str_puts(b, "</code>, not the policy below.");
  }
  tk_str_puts(b, "</p>\n");
  cJSON_Delete(j);
  return 0;
}

static int section_bc(tkStr *b, tkStr *v, const char *policy_path, const char *eval_path, const char *task,
                      int *missing) {
  char csv_path[PATH_MAX_], loss_path[PATH_MAX_], succ_path[PATH_MAX_];
  int rc;
  if ((rc = stem_path(csv_path, policy_path, ".csv")) ||
      (rc = stem_path(loss_path, policy_path, "_loss.png")) ||
      (rc = stem_path(succ_path, policy_path, "_success.png")))
    return rc;
  tk_str_puts(b, "<section id=\"bc\"><h2>Behavior cloning</h2>\n");
  /* bc-eval first: the number the section is about */
  if ((rc = eval_headline(b, eval_path, "bc-eval", task, policy_path, missing))) return rc;
  /* the policy file */
  if (!tk_file_exists(policy_path)) {
    sb_missing(b, "No policy", policy_path, "bc-train DATASET -o FILE writes it");
    ++*missing;
  } else {
    bcPolicy *p = bc_policy_load(policy_path);
    if (!p) return TK_EFORMAT;
    tk_str_puts(b, "<table>\n");
    tk_str_reset(v);
    tk_str_puts(v, "<code>");
    sb_esc(v, policy_path);
    tk_str_puts(v, "</code> (");
    sb_esc(v, p->algo);
    tk_str_puts(v, " on ");
    sb_esc(v, p->task[0] ? p->task : "an unknown task");
    tk_str_puts(v, ")");
    sb_row(b, "policy", tk_str_get(v));
    tk_str_reset(v);
    describe_policy(v, p);
    sb_row(b, "network", tk_str_get(v));
    tk_str_reset(v);
    for (int k = 0; k < p->nkeys; k++) {
      if (k) tk_str_puts(v, ", ");
      tk_str_puts(v, "<code>");
      sb_esc(v, p->keys[k]);
      tk_str_puts(v, "</code>");
    }
    for (int k = 0; k < p->nimg; k++) {
      if (v->n) tk_str_puts(v, ", ");
      tk_str_puts(v, "<code>");
      sb_esc(v, p->img[k].key);
      tk_str_printf(v, "</code> %dx%d camera", p->img[k].height, p->img[k].width);
    }
    sb_row(b, "inputs", tk_str_get(v));
    cJSON *info = cJSON_Parse(p->info);
    double epoch, epochs, sel, tr, va;
    if (cJSON_IsObject(info) && json_num(info, "epoch", &epoch) && json_num(info, "epochs", &epochs)) {
      tk_str_reset(v);
      tk_str_printf(v, "epoch <b>%.0f</b> of %.0f", epoch, epochs);
      const char *how = json_str(info, "selection");
      if (how) {
        tk_str_puts(v, ", by ");
        sb_esc(v, how);
      }
      if (json_num(info, "selection_success", &sel))
        tk_str_printf(v, " (%.0f%% on the selection seeds)", 100 * sel);
      if (json_num(info, "train_demos", &tr) && json_num(info, "valid_demos", &va))
        tk_str_printf(v, "; trained on %.0f demos, %.0f held out for validation", tr, va);
      if (json_num(info, "skipped_failures", &sel) && sel > 0)
        tk_str_printf(v, " (%.0f failed demos left out)", sel);
      sb_row(b, "chosen", tk_str_get(v));
    }
    cJSON_Delete(info);
    bc_policy_free(p);
    tk_str_puts(b, "</table>\n");
  }
  /* bc-train's metrics: the last epoch's losses, the rollouts */
  if (!tk_file_exists(csv_path)) {
    sb_missing(b, "No training log", csv_path, "bc-train writes it beside the policy");
    ++*missing;
  } else {
    csv c;
    if ((rc = csv_load(csv_path, &c))) return rc;
    static const char *const need[] = {"epoch", "train_loss", "valid_loss", "success_rate"};
    int col[4];
    double best = NAN, best_ep = 0, tl = NAN, vl = NAN, ep = 0, x;
    int evals = 0;
    if (!(rc = csv_need(&c, csv_path, need, col, 4)))
      for (int r = 1; r < c.nrows && !rc; r++) {
        if ((rc = csv_num(&c, csv_path, r, col[0], &ep)) || (rc = csv_num(&c, csv_path, r, col[1], &tl)) ||
            (rc = csv_num(&c, csv_path, r, col[2], &vl)) || (rc = csv_num(&c, csv_path, r, col[3], &x)))
          break;
        if (!isnan(x)) {
          evals++;
          if (!(x <= best)) best = x, best_ep = ep;
        }
      }
    int rows = c.nrows - 1;
    csv_free(&c);
    if (rc) return rc;
    tk_str_printf(b, "<p>Training: %d epochs logged", rows);
    if (rows) {
      tk_str_printf(b, "; at the last, train loss %.4g", tl);
      if (!isnan(vl)) tk_str_printf(b, ", validation loss %.4g", vl);
    }
    if (evals)
      tk_str_printf(b, "; %d rollout evaluations, best %.0f%% at epoch %.0f", evals, 100 * best, best_ep);
    else
      tk_str_puts(b, "; no rollouts during training");
    tk_str_puts(b, ".</p>\n");
  }
  /* the curves */
  png lp = {0}, sp = {0};
  int have_l = tk_file_exists(loss_path), have_s = tk_file_exists(succ_path);
  if ((have_l && (rc = png_load(loss_path, &lp))) || (have_s && (rc = png_load(succ_path, &sp)))) {
    free(lp.data);
    return rc;
  }
  tk_str_puts(b, "<div class=\"figs\">\n");
  if (have_l) sb_figure(b, "bc_loss", &lp, loss_path, "Training and validation loss per epoch");
  if (have_s) sb_figure(b, "bc_success", &sp, succ_path, "Rollout success during training (selection seeds)");
  tk_str_puts(b, "</div>\n");
  if (!have_l) {
    sb_missing(b, "No loss curve", loss_path, "bc-train writes it beside the policy");
    ++*missing;
  }
  if (!have_s) {
    sb_missing(b, "No success curve", succ_path, "bc-train writes it when it runs rollouts: --eval-every");
    ++*missing;
  }
  free(lp.data);
  free(sp.data);
  tk_str_puts(b, "</section>\n");
  return b->oom || v->oom ? tk_error(TK_ENOMEM, "out of memory") : 0;
}

/* ---- RL fine-tuning --------------------------------------------------------------------------------- */
typedef struct {
  char name[32];
  int n;
  int64_t step[MAX_EVALS]; /* env steps of each evaluation */
  double succ[MAX_EVALS];
} vwRun;

static int read_runs(const char *path, vwRun *runs, int *nruns) {
  csv c;
  int rc = csv_load(path, &c);
  if (rc) return rc;
  static const char *const need[] = {"run", "env_steps", "success_rate"};
  int col[3];
  *nruns = 0;
  if (!(rc = csv_need(&c, path, need, col, 3)))
    for (int r = 1; r < c.nrows && !rc; r++) {
      double st, su;
      const char *name = cell(&c, r, col[0]);
      if ((rc = csv_num(&c, path, r, col[1], &st)) || (rc = csv_num(&c, path, r, col[2], &su))) break;
      if (isnan(st) || st < 0 || st > 1e15 || isnan(su) || su < 0 || su > 1) {
        rc = tk_error(TK_EFORMAT, "%s: row %d: env_steps %s, success_rate %s out of range", path, r + 1,
                      cell(&c, r, col[1]), cell(&c, r, col[2]));
        break;
      }
      int k = 0;
      while (k < *nruns && strcmp(runs[k].name, name))
        k++;
      if (k == *nruns) {
        if (k == MAX_RUNS) {
          rc = tk_error(TK_EFORMAT, "%s: more than %d runs", path, MAX_RUNS);
          break;
        }
        if ((rc = tk_copy_name(runs[k].name, sizeof runs[k].name, name, "run name"))) {
          tk_error_wrap(rc, "%s: row %d", path, r + 1);
          break;
        }
        runs[k].n = 0;
        ++*nruns;
      }
      if (runs[k].n < MAX_EVALS) {
        runs[k].step[runs[k].n] = (int64_t)st;
        runs[k].succ[runs[k].n] = su;
        runs[k].n++;
      }
    }
  csv_free(&c);
  if (!rc && !*nruns) rc = tk_error(TK_EFORMAT, "%s: no evaluations (a header only)", path);
  return rc;
}

static int section_rl_in(tkStr *b, vwRun *runs, const char *ft_path, double target, int *missing) {
  char cmp_csv[PATH_MAX_], cmp_png[PATH_MAX_], one_csv[PATH_MAX_];
  int rc;
  if ((rc = stem_path(cmp_csv, ft_path, "_compare.csv")) ||
      (rc = stem_path(cmp_png, ft_path, "_compare.png")) || (rc = stem_path(one_csv, ft_path, ".csv")))
    return rc;
  tk_str_puts(b, "<section id=\"rl\"><h2>RL fine-tuning</h2>\n");
  const char *csv_path = tk_file_exists(cmp_csv) ? cmp_csv : tk_file_exists(one_csv) ? one_csv : NULL;
  if (!csv_path) {
    sb_missing(b, "No fine-tune run", cmp_csv, "rl-finetune --compare writes it; without --compare, FT.csv");
    ++*missing;
  } else {
    int nruns = 0;
    if ((rc = read_runs(csv_path, runs, &nruns))) return rc;
    const vwRun *ft = NULL, *sc = NULL;
    for (int k = 0; k < nruns; k++) {
      if (!strcmp(runs[k].name, "finetune")) ft = &runs[k];
      if (!strcmp(runs[k].name, "scratch")) sc = &runs[k];
    }
    /* the compare line: rl-finetune's words, from the evaluations in the file */
    if (ft && sc) {
      rlCurve cf = {ft->step, ft->succ, ft->n}, cs = {sc->step, sc->succ, sc->n};
      char line[512];
      rl_compare_line(target, &cf, &cs, line, sizeof line);
      tk_str_puts(b, "<p class=\"headline\" id=\"compare\">compare: ");
      sb_esc(b, line);
      tk_str_puts(b, "</p>\n");
    } else {
      tk_str_puts(b, "<p class=\"missing\">No comparison with scratch in <code>");
      sb_esc(b, csv_path);
      tk_str_puts(b, "</code> (rl-finetune --compare runs both).</p>\n");
      ++*missing;
    }
    /* the fine-tuned policy on bc-eval's held-out seeds, next to the BC policy's */
    char ft_eval[PATH_MAX_];
    if ((rc = stem_path(ft_eval, ft_path, "_eval.json")) ||
        (rc = eval_headline(b, ft_eval, "fine-tuned policy, bc-eval", "", ft_path, missing)))
      return rc;
    tk_str_printf(
        b,
        "<table><tr><th>run</th><th>start</th><th>best</th><th>last evaluation</th><th>%.0f%% reached "
        "at</th></tr>\n",
        100 * target);
    for (int k = 0; k < nruns; k++) {
      const vwRun *r = &runs[k];
      int bi = 0;
      for (int i = 1; i < r->n; i++)
        if (r->succ[i] > r->succ[bi]) bi = i;
      const rlCurve cr = {r->step, r->succ, r->n};
      const int64_t at = rl_curve_arrival(&cr, target);
      tk_str_puts(b, "<tr><td>");
      sb_esc(b, r == ft ? "fine-tune (from BC + demos)" : r->name);
      tk_str_printf(b, "</td><td>%.0f%%</td><td>%.0f%% at %lld</td><td>%.0f%% at %lld</td><td>",
                    100 * r->succ[0], 100 * r->succ[bi], (long long)r->step[bi], 100 * r->succ[r->n - 1],
                    (long long)r->step[r->n - 1]);
      if (at >= 0)
        tk_str_printf(b, "<b>%lld</b> env steps", (long long)at);
      else
        tk_str_printf(b, "not reached within %lld env steps", (long long)r->step[r->n - 1]);
      tk_str_puts(b, "</td></tr>\n");
    }
    tk_str_puts(b, "</table>\n<p>From <code>");
    sb_esc(b, csv_path);
    tk_str_puts(b, "</code>");
    if (tk_file_exists(ft_path)) { /* the best fine-tuned policy and where it came from */
      bcPolicy *p = bc_policy_load(ft_path);
      if (!p) return TK_EFORMAT;
      cJSON *info = cJSON_Parse(p->info);
      double st, su;
      tk_str_puts(b, "; the best fine-tuned policy is <code>");
      sb_esc(b, ft_path);
      tk_str_puts(b, "</code> (");
      sb_esc(b, p->algo);
      if (p->base)
        tk_str_printf(b, ", a residual actor correcting the frozen BC policy by up to %g", p->residual_scale);
      if (cJSON_IsObject(info) && json_num(info, "env_steps", &st) &&
          json_num(info, "selection_success", &su))
        tk_str_printf(b, ", the evaluation at %.0f env steps: %.0f%%", st, 100 * su);
      tk_str_puts(b, ")");
      cJSON_Delete(info);
      bc_policy_free(p);
    }
    tk_str_puts(b, ".</p>\n");
  }
  if (tk_file_exists(cmp_png)) {
    png p;
    if ((rc = png_load(cmp_png, &p))) return rc;
    tk_str_puts(b, "<div class=\"figs\">\n");
    sb_figure(b, "rl_compare", &p, cmp_png, "Success rate against environment steps: fine-tune and scratch");
    tk_str_puts(b, "</div>\n");
    free(p.data);
  } else if (csv_path) {
    sb_missing(b, "No comparison plot", cmp_png, "rl-finetune --compare draws it");
    ++*missing;
  }
  tk_str_puts(b, "</section>\n");
  return b->oom ? tk_error(TK_ENOMEM, "out of memory") : 0;
}

/* (the runs' evaluations are large: on the heap, freed on every path) */
static int section_rl(tkStr *b, const char *ft_path, double target, int *missing) {
  vwRun *runs = calloc(MAX_RUNS, sizeof *runs);
  if (!runs) return tk_error(TK_ENOMEM, "out of memory");
  int rc = section_rl_in(b, runs, ft_path, target, missing);
  free(runs);
  return rc;
}

/* ---- the page ---------------------------------------------------------------------------------------- */
static const char STYLE[] =
    "body{font-family:sans-serif;margin:1.5em;color:#222;max-width:1700px}"
    "h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.5em}"
    "table{border-collapse:collapse;margin:.5em 0}th,td{text-align:left;padding:.2em .8em .2em 0;"
    "vertical-align:top}tr th{font-weight:normal;color:#555}"
    ".headline{font-size:1.1em}.missing{color:#a40;font-style:italic}"
    ".figs{display:flex;flex-wrap:wrap;gap:1em}figure{margin:0}img{max-width:100%;height:auto;"
    "border:1px solid #ddd}figcaption{font-size:.9em;color:#555}"
    "dl{font-size:.9em}dt{font-weight:bold}dd{margin:0 0 .4em 1.5em}code{font-size:.95em}";

static void legend(tkStr *b, double target) {
  tk_str_puts(
      b, "<section id=\"legend\"><h2>What the numbers are</h2><dl>\n"
         "<dt>demos, successes, steps</dt><dd>Episodes in the dataset; those whose <code>success</code> "
         "attribute is 1 (the task said it was done when the episode ended); control steps (one action "
         "each) summed over all demos.</dd>\n"
         "<dt>observation keys, cameras</dt><dd>What a step records: low-dimensional observations with "
         "their shapes, and camera images (height x width, RGB).</dd>\n"
         "<dt>loss curves</dt><dd>bc-train's loss per epoch (the head's: squared error of the normalized "
         "actions, or their negative log-likelihood for Gaussian and GMM heads) on the training demos "
         "and on the held-out validation demos.</dd>\n"
         "<dt>success curve</dt><dd>Rollouts of the policy during training on the selection seeds "
         "(from 2000000000); the epoch with the best success is the one saved.</dd>\n"
         "<dt>bc-eval success</dt><dd>The saved policy run on held-out seeds (from 1000000000; by default "
         "the demos are recorded from seed 0 and the epoch is chosen on seeds from 2000000000, so no step "
         "of training saw these episodes); success is the task's own test; the length is the steps an "
         "episode took (it ends on success or at the task's horizon).</dd>\n");
  tk_str_printf(
      b,
      "<dt>fine-tune and scratch</dt><dd>rl-finetune's evaluations (success rate on seeds from "
      "4000000000, apart from bc-train's selection seeds and bc-eval's held-out ones) against environment "
      "steps: the fine-tune starts from the BC policy and learns from "
      "the demos and its own experience, scratch is the same algorithm from a random network, run "
      "until it reaches the target or has spent 10x the fine-tune's steps to it (or "
      "<code>--scratch-steps</code>). <i>start</i> is the evaluation before any RL step, <i>reached at</i> "
      "the first "
      "evaluation at or above the target (%.0f%%, rl-finetune's <code>--target</code>).</dd>\n"
      "<dt>compare</dt><dd>The env steps each run needed to reach the target; the ratio (scratch over "
      "fine-tune) is how many times fewer samples the fine-tune needed. A run that did not arrive "
      "counts with the steps it had, so the ratio is then a bound (a floor when scratch did not arrive)."
      "</dd>\n</dl></section>\n",
      100 * target);
}

static int write_page(const char *out, const tkStr *b) {
  char path[PATH_MAX_], tmp[PATH_MAX_];
  int rc = tk_resolve_link(out, path, sizeof path); /* through a symbolic link: its target is replaced */
  if (rc) return tk_error_wrap(rc, "%s", out);
  int fd = tk_temp_beside(path, tmp, sizeof tmp); /* a name of ours alone, never a user's file */
  if (fd < 0) return tk_error_wrap(fd, "%s", path);
  for (size_t at = 0; at < b->n && !rc;) {
    ssize_t k = write(fd, b->p + at, b->n - at);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0)
      rc = tk_error(TK_EIO, "%s: write %s: %s", path, tmp, k < 0 ? strerror(errno) : "no progress");
    else
      at += (size_t)k;
  }
  if (close(fd) && !rc) rc = tk_error(TK_EIO, "%s: close %s: %s", path, tmp, strerror(errno));
  if (!rc && (rc = tk_durable_rename(tmp, path)))
    tk_error_wrap(rc, "%s", path); /* fsync, rename, fsync dir */
  if (rc) unlink(tmp);
  return rc;
}

int vw_report(const vwReportOpts *o, vwReportResult *res) {
  memset(res, 0, sizeof *res);
  const char *dir = o->dir ? o->dir : ".";
  char demos[PATH_MAX_], policy[PATH_MAX_], eval[PATH_MAX_], ft[PATH_MAX_];
  int rc;
  if ((rc = in_path(demos, o->demos, dir, "demos.h5")) ||
      (rc = in_path(policy, o->policy, dir, "policy.h5")) ||
      (rc = in_path(eval, o->bc_eval, dir, "bc_eval.json")) ||
      (rc = in_path(ft, o->finetune, dir, "ft.h5")) || (rc = in_path(res->out, o->out, dir, "report.html")))
    return rc;
  if (!(o->target > 0 && o->target <= 1))
    return tk_error(TK_EINVAL, "--target %g: expected (0, 1]", o->target);
  if (!o->out) { /* the folder must be there (a typo is an error, not a page of "not found") */
    struct stat st;
    if (stat(dir, &st) || !S_ISDIR(st.st_mode)) return tk_error(TK_ENOTFOUND, "%s: no such directory", dir);
  }
  { /* the output rule: never over an input, a file of another kind only with force */
    char ft_eval[PATH_MAX_];
    if ((rc = stem_path(ft_eval, ft, "_eval.json"))) return rc;
    const char *in[] = {demos, policy, eval, ft, ft_eval};
    if ((rc = ds_output_check(res->out, DS_KIND_TEXT, in, 5, o->force))) return rc;
  }
  tkStr b = {0};
  char task[DS_NAME_MAX] = "";
  tk_str_puts(
      &b,
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
      "<meta name=\"generator\" content=\"demokit viewer --report, page version 1\">\n<title>demokit report");
  tkStr body = {0};
  int ds_missing = 0, missing = 0;
  tkStr v = {0}; /* one table cell at a time */
  rc = section_dataset(&body, &v, demos, task, sizeof task);
  if (rc > 0) ds_missing = rc, rc = 0;
  if (!rc) rc = section_bc(&body, &v, policy, eval, task, &missing);
  if (!rc) rc = section_rl(&body, ft, o->target, &missing);
  if (!rc) {
    legend(&body, o->target);
    if (task[0]) {
      tk_str_puts(&b, ": ");
      sb_esc(&b, task);
    }
    tk_str_printf(&b, "</title>\n<style>%s</style>\n</head><body>\n<h1>demokit report", STYLE);
    if (task[0]) {
      tk_str_puts(&b, ": ");
      sb_esc(&b, task);
    }
    tk_str_puts(&b, "</h1>\n<p>From the files in <code>");
    sb_esc(&b, dir);
    tk_str_puts(&b, "</code>, written by <code>viewer --report</code>.</p>\n");
    tk_str_put(&b, body.p ? body.p : "", body.n);
    tk_str_puts(&b, "</body></html>\n");
    if (b.oom || body.oom)
      rc = tk_error(TK_ENOMEM, "out of memory");
    else
      rc = write_page(res->out, &b);
  }
  tk_str_free(&b);
  tk_str_free(&body);
  tk_str_free(&v);
  res->missing = ds_missing + missing;
  return rc;
}
