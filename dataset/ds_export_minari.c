/* dataset/ds_export_minari.c -- export format "minari": a dataset directory that Minari's reader opens
 * (MinariStorage.read -> HDF5Storage; MinariDataset(OUT/data), or minari.load_dataset(id) when OUT is
 * <Minari datasets root>/<id>).
 *
 * OUT/data/metadata.json    dataset_id, total_episodes, total_steps, data_format "hdf5",
 *                           observation_space and action_space (JSON strings, as minari/serialization.py
 *                           writes gymnasium spaces), minari_version, jpeg_encoding false, dataset_size,
 *                           plus demokit's own: env_name, env_args, source, observation_keys, skipped ones
 * OUT/data/main_data.hdf5   nothing at the root but the episodes (Minari counts the root's links):
 *   episode_<i>             attrs id, total_steps, seed (when known), source_demo, success (when known)
 *     observations          (N+1, ...) one key: a dataset (Box space); several: a group of them (Dict)
 *                           rows: obs of each step, then next_obs of the last step (the last obs again
 *                           when the demo stores no next_obs; metadata counts those demos)
 *     actions (N, A) float64    rewards (N,) float64 (zeros when the demo stores none)
 *     terminations, truncations (N,) bool     terminations: dones; truncations: the last step of a
 *                                             demo that did not terminate
 *     infos                 an empty group (what Minari writes for an environment without infos)
 * Spaces: a float key is Box(-inf, inf, shape, float32|float64); a uint8 key Box(0, 255, shape, uint8);
 * actions Box(-1, 1, (A,), float64) when every action lies in [-1, 1], else Box(-inf, inf).
 * Images: Minari 0.5.3 (the release) decodes every uint8 Box of 32x32 or more with bounds 0..255 from
 * JPEG bytes (hdf5_storage.py, is_image_space); this toolkit writes no JPEG, so such keys are left out
 * and the result names them. Smaller uint8 keys are not image spaces to Minari and are written raw. */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "ds_internal.h"

#define MINARI_VERSION "0.5.3" /* the Minari release whose reader this layout follows */
#define MINARI_IMAGE_MIN 32    /* is_image_space: both of the first two dims at least this */
#define MINARI_ID_MAX 512

/* ---- the space JSON, a tkStr (cJSON prints no Infinity; Python's json does) ---- */

/* numpy's tolist() of a full array: nested lists of v, shape[0] x shape[1] x ... */
static void sb_nested(tkStr *b, const int64_t *shape, int rank, const char *v) {
  if (rank == 0) {
    tk_str_printf(b, "%s", v);
    return;
  }
  tk_str_printf(b, "[");
  for (int64_t i = 0; i < shape[0] && !b->oom; i++) {
    if (i) tk_str_printf(b, ", ");
    sb_nested(b, shape + 1, rank - 1, v);
  }
  tk_str_printf(b, "]");
}

/* {"type": "Box", "dtype": ..., "shape": [...], "low": [...], "high": [...]} (serialization.py) */
static void sb_box(tkStr *b, dsDtype t, int rank, const int64_t *shape, const char *low, const char *high) {
  tk_str_printf(b, "{\"type\": \"Box\", \"dtype\": \"%s\", \"shape\": [", ds_dtype_name(t));
  for (int i = 0; i < rank; i++)
    tk_str_printf(b, "%s%lld", i ? ", " : "", (long long)shape[i]);
  tk_str_printf(b, "], \"low\": ");
  sb_nested(b, shape, rank, low);
  tk_str_printf(b, ", \"high\": ");
  sb_nested(b, shape, rank, high);
  tk_str_printf(b, "}");
}

static void sb_key_box(tkStr *b, const dsKeySpec *k) {
  if (k->dtype == DS_U8)
    sb_box(b, k->dtype, k->rank, k->shape, "0", "255");
  else
    sb_box(b, k->dtype, k->rank, k->shape, "-Infinity", "Infinity");
}

/* ---- which keys: every key but the ones Minari would read as JPEG, in name order ---- */
static int minari_image(const dsKeySpec *k) {
  return k->dtype == DS_U8 && (k->rank == 2 || k->rank == 3) && k->shape[0] >= MINARI_IMAGE_MIN &&
         k->shape[1] >= MINARI_IMAGE_MIN;
}

typedef struct {
  int idx[DS_MAX_KEYS];
  int n;
} keyPlan;

static void plan_keys(const dsSchema *s, keyPlan *kp, dsConvertResult *r) {
  kp->n = 0;
  for (int k = 0; k < s->nkeys; k++) {
    if (minari_image(&s->keys[k])) {
      ds_list_add(r->skipped, sizeof r->skipped, s->keys[k].name);
      continue;
    }
    int j = kp->n++;
    while (j > 0 && strcmp(s->keys[kp->idx[j - 1]].name, s->keys[k].name) > 0) {
      kp->idx[j] = kp->idx[j - 1];
      j--;
    }
    kp->idx[j] = k;
  }
  for (int j = 0; j < kp->n; j++)
    ds_list_add(r->keys, sizeof r->keys, s->keys[kp->idx[j]].name);
  if (r->skipped[0])
    snprintf(r->why, sizeof r->why,
             "uint8 images of %dx%d or more: Minari %s reads those spaces only as JPEG bytes, which demokit "
             "does not write",
             MINARI_IMAGE_MIN, MINARI_IMAGE_MIN, MINARI_VERSION);
}

/* ---- the dataset id ---- */
static int id_part_ok(const char *s, size_t n) {
  if (n == 0) return 0;
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') ||
          s[i] == '_' || s[i] == '-'))
      return 0;
  return 1;
}

/* "name-v<digits>" with a non-empty name */
static int has_version(const char *s) {
  const char *v = NULL;
  for (const char *p = strstr(s, "-v"); p; p = strstr(p + 1, "-v"))
    v = p;
  if (!v || v == s || !v[2]) return 0;
  for (const char *p = v + 2; *p; p++)
    if (*p < '0' || *p > '9') return 0;
  return 1;
}

/* Minari's parse_dataset_id: (namespace/)name-v<N>, every part of [-_A-Za-z0-9] */
static int valid_id(const char *id) {
  const char *slash = strrchr(id, '/');
  const char *name = slash ? slash + 1 : id;
  if (!id_part_ok(name, strlen(name)) || !has_version(name)) return 0;
  for (const char *p = id; slash && p < slash;) {
    const char *e = strchr(p, '/');
    if (!id_part_ok(p, (size_t)(e - p))) return 0;
    p = e + 1;
  }
  return 1;
}

static void sanitize(char *s) {
  for (; *s; s++)
    if (!id_part_ok(s, 1)) *s = '_';
}

/* The id: OUT's path below the Minari datasets root when OUT lies there (the root's directories are the
 * ids: load_dataset and list_local_datasets find it), else demokit/<task>/<OUT's name>(-v0). */
static int make_id(const char *dest, const char *task, char *id, size_t n, int *in_root) {
  *in_root = 0;
  char rootbuf[PATH_MAX], root[PATH_MAX], parent[PATH_MAX], pbuf[4096], bbuf[4096];
  const char *env = getenv("MINARI_DATASETS_PATH"), *home = getenv("HOME");
  if (env && env[0])
    snprintf(rootbuf, sizeof rootbuf, "%s", env);
  else
    snprintf(rootbuf, sizeof rootbuf, "%s/.minari/datasets", home ? home : "/nonexistent");
  snprintf(pbuf, sizeof pbuf, "%s", dest);
  snprintf(bbuf, sizeof bbuf, "%s", dest);
  const char *base = basename(bbuf);
  if (realpath(rootbuf, root) && realpath(dirname(pbuf), parent)) {
    size_t l = strlen(root);
    if (!strcmp(parent, root) || (!strncmp(parent, root, l) && parent[l] == '/')) {
      *in_root = 1;
      const char *rel = parent[l] ? parent + l + 1 : "";
      if (tk_snprintf(id, n, "%s%s%s", rel, rel[0] ? "/" : "", base))
        return tk_error(TK_ERANGE, "dataset id too long");
      if (!valid_id(id))
        return tk_error(
            TK_EINVAL,
            "the output lies in the Minari datasets root %s, where a dataset's directory is its id: "
            "'%s' is no Minari id ([namespace/]name-v<N>, letters, digits, '_' and '-')",
            root, id);
      return 0;
    }
  }
  char t[DS_NAME_MAX], b[256];
  snprintf(t, sizeof t, "%s", task && task[0] ? task : "task");
  snprintf(b, sizeof b, "%s", base);
  sanitize(t);
  sanitize(b);
  if (tk_snprintf(id, n, "demokit/%s/%s%s", t, b, has_version(b) ? "" : "-v0"))
    return tk_error(TK_ERANGE, "dataset id too long");
  return 0;
}

/* ---- episodes ---- */
/* One key of demo i as N+1 rows: obs, then next_obs of the last step (the last obs again without it). */
static int write_obs(dsFile *f, int i, const dsKeySpec *key, hid_t loc, const char *name) {
  const dsDemoInfo *di = ds_demo(f, i);
  int64_t T = di->num_samples, elems = ds_key_elems(key);
  size_t row = (size_t)elems * ds_dtype_size(key->dtype);
  uint8_t *buf = malloc(row * (size_t)(T + 1));
  if (!buf) return tk_error(TK_ENOMEM, "%s: out of memory for %s", di->name, key->name);
  char nm[DS_NAME_MAX + 16];
  snprintf(nm, sizeof nm, "obs/%s", key->name);
  int rc = ds_read_rows(f, i, nm, 0, T, key->dtype, buf, elems * T, NULL);
  if (!rc && di->has_next_obs) {
    snprintf(nm, sizeof nm, "next_obs/%s", key->name);
    rc = ds_read_rows(f, i, nm, T - 1, 1, key->dtype, buf + row * (size_t)T, elems, NULL);
  } else if (!rc) {
    memcpy(buf + row * (size_t)T, buf + row * (size_t)(T - 1), row);
  }
  hsize_t dims[DS_MAX_RANK + 1];
  dims[0] = (hsize_t)(T + 1);
  for (int d = 0; d < key->rank; d++)
    dims[d + 1] = (hsize_t)key->shape[d];
  if (!rc)
    rc = ds_write_array(loc, name, ds_h5_filetype(key->dtype), ds_h5_memtype(key->dtype), key->rank + 1, dims,
                        buf);
  free(buf);
  return rc;
}

static int write_episode(dsFile *f, int i, int64_t id, const keyPlan *kp, hid_t file, hid_t bt,
                         int *unit_actions) {
  const dsSchema *s = ds_schema(f);
  const dsDemoInfo *di = ds_demo(f, i);
  int64_t T = di->num_samples;
  int A = s->action_dim;
  char gname[48];
  snprintf(gname, sizeof gname, "episode_%lld", (long long)id);
  hid_t eg = H5Gcreate2(file, gname, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), og = -1, ig = -1;
  int rc = eg < 0 ? ds_h5_fail(TK_EIO, "create %s", gname) : 0;
  if (!rc) rc = ds_attr_write_i64(eg, "id", id);
  if (!rc) rc = ds_attr_write_i64(eg, "total_steps", T);
  if (!rc && di->seed >= 0) rc = ds_attr_write_i64(eg, "seed", di->seed);
  if (!rc) rc = ds_attr_write_str(eg, "source_demo", di->name);
  if (!rc && di->success >= 0) rc = ds_attr_write_i64(eg, "success", di->success);
  if (!rc && kp->n == 1) {
    rc = write_obs(f, i, &s->keys[kp->idx[0]], eg, "observations");
  } else if (!rc) {
    if ((og = H5Gcreate2(eg, "observations", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) < 0)
      rc = ds_h5_fail(TK_EIO, "create %s/observations", gname);
    for (int k = 0; k < kp->n && !rc; k++)
      rc = write_obs(f, i, &s->keys[kp->idx[k]], og, s->keys[kp->idx[k]].name);
  }
  double *act = malloc(sizeof(double) * (size_t)(T * A)), *rew = calloc((size_t)T, sizeof(double));
  uint8_t *term = calloc((size_t)T, 1), *trunc = calloc((size_t)T, 1);
  if (!rc && (!act || !rew || !term || !trunc)) rc = tk_error(TK_ENOMEM, "%s: out of memory", di->name);
  if (!rc) rc = ds_read_rows(f, i, "actions", 0, T, DS_F64, act, T * A, NULL);
  if (!rc && di->has_rewards) rc = ds_read_rows(f, i, "rewards", 0, T, DS_F64, rew, T, NULL);
  if (!rc && di->has_dones) rc = ds_read_rows(f, i, "dones", 0, T, DS_U8, term, T, NULL);
  if (!rc) {
    for (int64_t t = 0; t < T * A; t++)
      *unit_actions = *unit_actions && act[t] >= -1 && act[t] <= 1;
    for (int64_t t = 0; t < T; t++)
      term[t] = term[t] != 0;
    trunc[T - 1] = !term[T - 1]; /* the demo ended without terminating */
    hsize_t d2[2] = {(hsize_t)T, (hsize_t)A}, d1[1] = {(hsize_t)T};
    rc = ds_write_array(eg, "actions", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, d2, act);
    if (!rc) rc = ds_write_array(eg, "rewards", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, d1, rew);
    if (!rc) rc = ds_write_array(eg, "terminations", bt, bt, 1, d1, term);
    if (!rc) rc = ds_write_array(eg, "truncations", bt, bt, 1, d1, trunc);
  }
  if (!rc && (ig = H5Gcreate2(eg, "infos", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) < 0)
    rc = ds_h5_fail(TK_EIO, "create %s/infos", gname);
  free(act);
  free(rew);
  free(term);
  free(trunc);
  if (ig >= 0) H5Gclose(ig);
  if (og >= 0) H5Gclose(og);
  if (eg >= 0) H5Gclose(eg);
  return rc ? tk_error_wrap(rc, "%s (from data/%s)", gname, di->name) : 0;
}

/* ---- metadata.json ---- */
static int write_metadata(dsExportJob *j, const keyPlan *kp, const char *id, int unit_actions, int repeated,
                          const char *path) {
  dsFile *f = j->f;
  const dsSchema *s = ds_schema(f);
  dsConvertResult *r = j->res;
  tkStr obs = {0}, act = {0};
  if (kp->n == 1) {
    sb_key_box(&obs, &s->keys[kp->idx[0]]);
  } else {
    tk_str_printf(&obs, "{\"type\": \"Dict\", \"subspaces\": {");
    for (int k = 0; k < kp->n; k++) {
      tk_str_printf(&obs, "%s\"%s\": ", k ? ", " : "", s->keys[kp->idx[k]].name);
      sb_key_box(&obs, &s->keys[kp->idx[k]]);
    }
    tk_str_printf(&obs, "}}");
  }
  int64_t ashape[1] = {s->action_dim};
  if (unit_actions)
    sb_box(&act, DS_F64, 1, ashape, "-1.0", "1.0");
  else
    sb_box(&act, DS_F64, 1, ashape, "-Infinity", "Infinity");
  char main_path[4400], absrc[PATH_MAX];
  snprintf(main_path, sizeof main_path, "%s/data/main_data.hdf5", j->tmp);
  int64_t size = tk_file_size(main_path);
  const char *src = realpath(j->src, absrc) ? absrc : j->src;
  char desc[1024];
  snprintf(desc, sizeof desc, "Demonstrations of %s, converted by demokit from %s", ds_env_name(f), src);
  cJSON *m = cJSON_CreateObject();
  cJSON *keys = cJSON_CreateArray(), *skipped = cJSON_CreateArray();
  for (int k = 0; k < kp->n; k++)
    cJSON_AddItemToArray(keys, cJSON_CreateString(s->keys[kp->idx[k]].name));
  for (int k = 0; k < s->nkeys; k++)
    if (minari_image(&s->keys[k])) cJSON_AddItemToArray(skipped, cJSON_CreateString(s->keys[k].name));
  int rc = obs.oom || act.oom ? tk_error(TK_ENOMEM, "out of memory") : 0;
  if (!rc) {
    cJSON_AddStringToObject(m, "dataset_id", id);
    cJSON_AddNumberToObject(m, "total_episodes", (double)r->episodes);
    cJSON_AddNumberToObject(m, "total_steps", (double)r->steps);
    cJSON_AddStringToObject(m, "data_format", "hdf5");
    cJSON_AddBoolToObject(m, "jpeg_encoding", 0);
    cJSON_AddStringToObject(m, "observation_space", obs.p);
    cJSON_AddStringToObject(m, "action_space", act.p);
    cJSON_AddStringToObject(m, "minari_version", MINARI_VERSION);
    cJSON_AddNumberToObject(m, "dataset_size", size >= 0 ? round((double)size / 1e5) / 10 : 0);
    cJSON_AddStringToObject(m, "description", desc);
    cJSON_AddStringToObject(m, "env_name", ds_env_name(f));
    cJSON *args = cJSON_Parse(ds_env_args(f));
    if (args) cJSON_AddItemToObject(m, "env_args", args);
    cJSON_AddStringToObject(m, "source", src);
    cJSON_AddStringToObject(m, "written_by", DS_FORMAT_NAME);
    cJSON_AddItemToObject(m, "observation_keys", keys);
    cJSON_AddItemToObject(m, "skipped_observation_keys", skipped);
    keys = skipped = NULL;
    cJSON_AddStringToObject(m, "skipped_why", r->why);
    cJSON_AddNumberToObject(m, "final_observation_repeated", repeated);
  }
  cJSON_Delete(keys);
  cJSON_Delete(skipped);
  char *txt = rc ? NULL : cJSON_Print(m);
  cJSON_Delete(m);
  tk_str_free(&obs);
  tk_str_free(&act);
  if (!rc && !txt) rc = tk_error(TK_ENOMEM, "out of memory");
  if (!rc) {
    size_t l = strlen(txt);
    char *t2 = realloc(txt, l + 2);
    if (t2) {
      txt = t2;
      memcpy(txt + l, "\n", 2);
    }
    rc = ds_write_text_file(path, txt);
  }
  cJSON_free(txt);
  return rc;
}

int ds_export_minari(dsExportJob *j) {
  dsFile *f = j->f;
  dsConvertResult *r = j->res;
  keyPlan kp;
  plan_keys(ds_schema(f), &kp, r);
  if (kp.n == 0)
    return tk_error(TK_EINVAL, "%s: no observation key Minari can hold (left out: %s; %s)", j->src,
                    r->skipped, r->why);
  for (int i = 0; i < ds_num_demos(f); i++)
    if (ds_demo(f, i)->num_samples ==
        0) /* refused, not skipped: never less than the dataset without a word */
      return tk_error(
          TK_EFORMAT,
          "%s: %s has no steps, which a Minari episode cannot hold (drop it first: dataset filter %s "
          "--min-len 1 -o OUT)",
          j->src, ds_demo(f, i)->name, j->src);
  char id[MINARI_ID_MAX];
  int in_root;
  int rc = make_id(j->dest, ds_env_name(f), id, sizeof id, &in_root);
  if (rc) return rc;
  char dir[4300], main_path[4400], meta[4400];
  snprintf(dir, sizeof dir, "%s/data", j->tmp);
  snprintf(main_path, sizeof main_path, "%s/main_data.hdf5", dir);
  snprintf(meta, sizeof meta, "%s/metadata.json", dir);
  if (mkdir(dir, 0755)) return tk_error(TK_EIO, "create %s: %s", dir, strerror(errno));
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG);
  hid_t file = H5Fcreate(main_path, H5F_ACC_EXCL, H5P_DEFAULT, fapl);
  H5Pclose(fapl);
  if (file < 0) return ds_h5_fail(TK_EIO, "create %s", main_path);
  hid_t bt = ds_h5_bool_type();
  int unit_actions = 1, repeated = 0;
  for (int i = 0; i < ds_num_demos(f) && !rc; i++) {
    rc = write_episode(f, i, i, &kp, file, bt, &unit_actions);
    repeated += !ds_demo(f, i)->has_next_obs;
    r->episodes++;
    r->steps += ds_demo(f, i)->num_samples;
  }
  H5Tclose(bt);
  if (H5Fclose(file) < 0 && !rc) rc = ds_h5_fail(TK_EIO, "close %s", main_path);
  if (!rc) rc = write_metadata(j, &kp, id, unit_actions, repeated, meta);
  if (!rc && in_root)
    snprintf(r->note, sizeof r->note, "dataset id %s (minari.load_dataset(\"%s\"))", id, id);
  else if (!rc)
    snprintf(r->note, sizeof r->note, "dataset id %s (minari.MinariDataset(\"%.400s/data\"))", id, j->dest);
  if (!rc && repeated) {
    size_t l = strlen(r->note);
    snprintf(r->note + l, sizeof r->note - l, "; %d demo%s without next_obs: final observation = last obs",
             repeated, repeated == 1 ? "" : "s");
  }
  return rc;
}
