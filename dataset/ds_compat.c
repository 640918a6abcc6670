/* dataset/ds_compat.c -- whether the episodes of two datasets belong in one file.
 *
 * One rule for every place that puts episodes of two sources together (merge, and publishing
 * staged episodes after a crash): the same task, the same env_args (env_kwargs included: a
 * controller, an action mode, a camera list or a control frequency there changes what an action
 * means), the same schema (action size, state size, observation keys with their dtypes and shapes,
 * cameras and their sizes) and the same nominal control rate (demo attr control_hz). The message
 * names both files and the first difference. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "ds_internal.h"

/* First difference between two JSON values: its path (".a.b") into path; 0 when equal. */
static int json_diff(const cJSON *x, const cJSON *y, char *path, size_t n, size_t at) {
  if (x && y && cJSON_IsObject(x) && cJSON_IsObject(y)) {
    const cJSON *c;
    cJSON_ArrayForEach(c, x) {
      const cJSON *d = cJSON_GetObjectItemCaseSensitive(y, c->string);
      size_t l = at < n ? (size_t)snprintf(path + at, n - at, ".%s", c->string) : 0;
      if (json_diff(c, d, path, n, at + l)) return 1;
    }
    cJSON_ArrayForEach(c, y) {
      if (!cJSON_GetObjectItemCaseSensitive(x, c->string)) {
        if (at < n) snprintf(path + at, n - at, ".%s", c->string);
        return 1;
      }
    }
    if (at < n) path[at] = 0;
    return 0;
  }
  if (x && y && cJSON_Compare(x, y, 1)) return 0;
  return 1;
}

/* The value at a ".a.b" path of j, printed (at most n bytes, "absent" when missing). */
static void json_at(const cJSON *j, const char *path, char *out, size_t n) {
  char buf[512];
  snprintf(buf, sizeof buf, "%s", path);
  const cJSON *c = j;
  for (char *s = buf, *tok; c && (tok = strtok_r(s, ".", &s));)
    c = cJSON_GetObjectItemCaseSensitive(c, tok);
  char *txt = c ? cJSON_PrintUnformatted(c) : NULL;
  if (!txt)
    snprintf(out, n, "absent");
  else if (strlen(txt) < n)
    snprintf(out, n, "%s", txt);
  else
    snprintf(out, n, "%.*s...", (int)(n > 4 ? n - 4 : 0), txt);
  cJSON_free(txt);
}

static int env_args_compare(dsFile *a, const char *an, dsFile *b, const char *bn) {
  const char *ta = ds_env_args(a), *tb = ds_env_args(b);
  if (!strcmp(ta, tb)) return 0;
  cJSON *ja = cJSON_Parse(ta), *jb = cJSON_Parse(tb);
  int rc = 0;
  if (!ja || !jb) {
    rc = tk_error(TK_EFORMAT, "%s and %s have different env_args: '%.200s' vs '%.200s'", an, bn, ta, tb);
  } else {
    char path[512] = "";
    if (json_diff(ja, jb, path, sizeof path, 0)) {
      char va[160], vb[160];
      json_at(ja, path, va, sizeof va);
      json_at(jb, path, vb, sizeof vb);
      rc = tk_error(TK_EFORMAT, "%s and %s have different env_args: env_args%s is %s in %s but %s in %s", an,
                    bn, path[0] ? path : "", va, an, vb, bn);
    }
  }
  cJSON_Delete(ja);
  cJSON_Delete(jb);
  return rc;
}

int ds_env_kwargs_compatible(dsFile *f, const char *kwargs_json) {
  cJSON *file = cJSON_Parse(ds_env_args(f)), *mine = cJSON_Parse(kwargs_json), *none = cJSON_CreateObject();
  const cJSON *fk = cJSON_GetObjectItemCaseSensitive(file, "env_kwargs");
  if (!fk) fk = none; /* a file without env_kwargs: only an empty object matches, as before */
  char path[512] = "";
  int rc = 0;
  if (!mine) {
    rc = tk_error(TK_EFORMAT, "%s: this recording's env_kwargs are not JSON: '%.200s'", ds_path(f),
                  kwargs_json);
  } else if (json_diff(fk, mine, path, sizeof path, 0)) {
    char va[160], vb[160];
    json_at(fk, path, va, sizeof va);
    json_at(mine, path, vb, sizeof vb);
    rc = tk_error(TK_EFORMAT,
                  "%s: env_kwargs%s is %s in the file but %s in this recording (record into another file)",
                  ds_path(f), path, va, vb);
  }
  cJSON_Delete(file);
  cJSON_Delete(mine);
  cJSON_Delete(none);
  return rc;
}

/* Nominal control rates of a file's demos: lowest and highest (0: a demo without one). */
static void rate_range(dsFile *f, double *lo, double *hi) {
  *lo = INFINITY;
  *hi = 0;
  for (int i = 0; i < ds_num_demos(f); i++) {
    double r = ds_demo(f, i)->control_hz;
    if (!(r > 0)) r = 0;
    *lo = fmin(*lo, r);
    *hi = fmax(*hi, r);
  }
}

static void rate_str(double lo, double hi, char *out, size_t n) {
  if (hi == 0)
    snprintf(out, n, "no recorded control rate");
  else if (lo == 0)
    snprintf(out, n, "control rates up to %g Hz (some demos without one)", hi);
  else if (lo == hi)
    snprintf(out, n, "%g Hz", lo);
  else
    snprintf(out, n, "%g-%g Hz", lo, hi);
}

int ds_compatible(dsFile *a, const char *an, dsFile *b, const char *bn) {
  if (strcmp(ds_env_name(a), ds_env_name(b)))
    return tk_error(TK_EFORMAT, "%s is task '%s' but %s is task '%s'", an, ds_env_name(a), bn,
                    ds_env_name(b));
  int rc = env_args_compare(a, an, b, bn);
  if (rc) return rc;
  /* an empty file has no schema and no rate to disagree with */
  if (ds_num_demos(a) == 0 || ds_num_demos(b) == 0) return 0;
  if (ds_schema_compare(ds_schema(a), ds_schema(b))) {
    char why[TK_ERRMSG_MAX];
    snprintf(why, sizeof why, "%s", tk_errmsg());
    return tk_error(TK_EFORMAT, "%s and %s have different schemas: %s", an, bn, why);
  }
  double alo, ahi, blo, bhi;
  rate_range(a, &alo, &ahi);
  rate_range(b, &blo, &bhi);
  if (alo != blo || ahi != bhi) {
    char ra[96], rb[96];
    rate_str(alo, ahi, ra, sizeof ra);
    rate_str(blo, bhi, rb, sizeof rb);
    return tk_error(TK_EFORMAT, "%s and %s were recorded at different control rates: %s in %s, %s in %s", an,
                    bn, ra, an, rb, bn);
  }
  return 0;
}
