/* dataset/ds_export_d4rl.c -- export format "d4rl": one HDF5 file of flat arrays, as D4RL's
 * qlearning datasets (get_dataset / qlearning_dataset) hold them.
 *
 *   observations, next_observations (N, D) float32   the low-dim keys concatenated in name order
 *   actions (N, A) float32      rewards (N,) float32
 *   terminals, timeouts (N,) bool (h5py's enum)       timeouts: the last step of a demo not terminated
 *   attrs: obs_keys, obs_key_dims, total_episodes, total_steps, env_name, source, layout "d4rl",
 *          skipped_image_keys ("" when none), next_observations_from_obs (only when some demo has no
 *          next_obs: then next_observations are the observations shifted by one, the last repeated)
 * Image keys are not written (D4RL rows are flat float vectors); the result says which were left out. */
#include <stdlib.h>
#include <string.h>

#include "ds_internal.h"

static int attr_write_strv(hid_t obj, const char *name, const char *const *v, int n) {
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, H5T_VARIABLE);
  H5Tset_cset(t, H5T_CSET_UTF8);
  hsize_t dim = (hsize_t)n;
  hid_t sp = H5Screate_simple(1, &dim, NULL);
  hid_t a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
  int rc = 0;
  if (a < 0 || (n > 0 && H5Awrite(a, t, v) < 0)) rc = ds_h5_fail(TK_EIO, "write attribute %s", name);
  if (a >= 0) H5Aclose(a);
  H5Sclose(sp);
  H5Tclose(t);
  return rc;
}

static int write_arrays(dsFile *f, hid_t root, int64_t *episodes, int64_t *steps) {
  int all_next = 1;
  for (int i = 0; i < ds_num_demos(f); i++)
    all_next = all_next && ds_demo(f, i)->has_next_obs;
  dsLoadOpts lo = {.obs_keys = NULL, .nobs_keys = 0, .filter_key = NULL, .load_next_obs = all_next};
  dsLoaded L;
  int rc = ds_load(f, &lo, &L);
  if (rc) return rc;
  int64_t N = L.n;
  int D = L.obs_dim, A = L.act_dim;
  float *next = L.next_obs;
  uint8_t *term = malloc((size_t)TK_MAX(N, 1)), *tout = calloc((size_t)TK_MAX(N, 1), 1);
  if (!next) next = malloc(sizeof(float) * (size_t)TK_MAX(N * D, 1));
  if (!term || !tout || !next) rc = tk_error(TK_ENOMEM, "out of memory for %lld rows", (long long)N);
  for (int d = 0; d < L.ndemos && !rc; d++) {
    int64_t s0 = L.demo_start[d], s1 = L.demo_start[d + 1];
    if (!L.next_obs) /* no next_obs stored: obs shifted by one, the last row repeated */
      for (int64_t t = s0; t < s1; t++)
        memcpy(next + t * D, L.obs + (t + 1 < s1 ? t + 1 : t) * D, sizeof(float) * (size_t)D);
    for (int64_t t = s0; t < s1; t++)
      term[t] = L.dones[t] != 0;
    if (s1 > s0) tout[s1 - 1] = !term[s1 - 1]; /* the demo ended without terminating */
  }
  hid_t bt = ds_h5_bool_type();
  hsize_t dobs[2] = {(hsize_t)N, (hsize_t)D}, dact[2] = {(hsize_t)N, (hsize_t)A}, d1[1] = {(hsize_t)N};
  if (!rc) rc = ds_write_array(root, "observations", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, dobs, L.obs);
  if (!rc) rc = ds_write_array(root, "next_observations", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, dobs, next);
  if (!rc) rc = ds_write_array(root, "actions", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, dact, L.actions);
  if (!rc) rc = ds_write_array(root, "rewards", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 1, d1, L.rewards);
  if (!rc) rc = ds_write_array(root, "terminals", bt, bt, 1, d1, term);
  if (!rc) rc = ds_write_array(root, "timeouts", bt, bt, 1, d1, tout);
  const char *names[DS_MAX_KEYS];
  int64_t dims[DS_MAX_KEYS];
  for (int k = 0; k < L.nkeys; k++) {
    names[k] = L.key_names[k];
    dims[k] = L.key_offset[k + 1] - L.key_offset[k];
  }
  if (!rc) rc = attr_write_strv(root, "obs_keys", names, L.nkeys);
  if (!rc) {
    hsize_t nk = (hsize_t)L.nkeys;
    hid_t sp = H5Screate_simple(1, &nk, NULL);
    hid_t a = H5Acreate2(root, "obs_key_dims", H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0 || (nk > 0 && H5Awrite(a, H5T_NATIVE_INT64, dims) < 0))
      rc = ds_h5_fail(TK_EIO, "write attribute obs_key_dims");
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
  }
  if (!rc && !all_next) rc = ds_attr_write_i64(root, "next_observations_from_obs", 1);
  H5Tclose(bt);
  *episodes = L.ndemos;
  *steps = N;
  free(term);
  free(tout);
  if (next != L.next_obs) free(next);
  ds_loaded_free(&L);
  return rc;
}

int ds_export_d4rl(dsExportJob *j) {
  const dsSchema *s = ds_schema(j->f);
  dsConvertResult *r = j->res;
  /* the keys ds_load concatenates (every non-image key, in name order) and the ones it leaves out */
  const char *sorted[DS_MAX_KEYS];
  int n = 0;
  for (int k = 0; k < s->nkeys; k++) {
    if (ds_key_is_image(&s->keys[k])) {
      ds_list_add(r->skipped, sizeof r->skipped, s->keys[k].name);
      continue;
    }
    int at = n++;
    while (at > 0 && strcmp(sorted[at - 1], s->keys[k].name) > 0) {
      sorted[at] = sorted[at - 1];
      at--;
    }
    sorted[at] = s->keys[k].name;
  }
  for (int k = 0; k < n; k++)
    ds_list_add(r->keys, sizeof r->keys, sorted[k]);
  if (r->skipped[0]) snprintf(r->why, sizeof r->why, "images: D4RL rows are flat float vectors");
  if (n == 0)
    return tk_error(TK_EINVAL, "%s: no low-dimensional observation keys (D4RL rows hold no images)", j->src);
  hid_t root = H5Gopen2(j->file, "/", H5P_DEFAULT);
  if (root < 0) return ds_h5_fail(TK_EIO, "open root group");
  int rc = write_arrays(j->f, root, &r->episodes, &r->steps);
  if (!rc) rc = ds_attr_write_i64(root, "total_episodes", r->episodes);
  if (!rc) rc = ds_attr_write_i64(root, "total_steps", r->steps);
  if (!rc) rc = ds_attr_write_str(root, "env_name", ds_env_name(j->f));
  if (!rc) rc = ds_attr_write_str(root, "source", j->src);
  if (!rc) rc = ds_attr_write_str(root, "layout", "d4rl");
  if (!rc) rc = ds_attr_write_str(root, "skipped_image_keys", r->skipped);
  H5Gclose(root);
  return rc;
}
