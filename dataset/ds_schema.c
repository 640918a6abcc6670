/* dataset/ds_schema.c -- observation key specs and schema comparison. */
#include <string.h>

#include "ds_internal.h"

int64_t ds_key_elems(const dsKeySpec *k) {
  int64_t n = 1;
  for (int i = 0; i < k->rank; i++)
    n *= k->shape[i];
  return n;
}

int ds_key_is_image(const dsKeySpec *k) { return k->dtype == DS_U8 && k->rank == 3; }

int ds_schema_add(dsSchema *s, const char *name, dsDtype t, int rank, const int64_t *shape) {
  if (s->nkeys >= DS_MAX_KEYS)
    return tk_error(TK_ERANGE, "too many observation keys (limit %d)", DS_MAX_KEYS);
  if (!name || !name[0] || strchr(name, '/'))
    return tk_error(TK_EINVAL, "bad observation key name '%s'", name ? name : "");
  dsKeySpec *k = &s->keys[s->nkeys];
  memset(k, 0, sizeof *k);
  /* whole or refused: two keys that differ only past a cut would become one */
  if (tk_copy_name(k->name, sizeof k->name, name, "observation key")) return TK_ERANGE;
  if (rank < 1 || rank > DS_MAX_RANK)
    return tk_error(TK_EINVAL, "key %s: rank %d not in 1..%d", name, rank, DS_MAX_RANK);
  if (ds_schema_find(s, name) >= 0) return tk_error(TK_EINVAL, "key %s given twice", name);
  k->dtype = t;
  k->rank = rank;
  for (int i = 0; i < rank; i++) {
    if (shape[i] < 1 || shape[i] > (1 << 20))
      return tk_error(TK_ERANGE, "key %s: dimension %lld out of range", name, (long long)shape[i]);
    k->shape[i] = shape[i];
  }
  if (ds_key_elems(k) > (1 << 26))
    return tk_error(TK_ERANGE, "key %s: %lld elements per step is too many", name,
                    (long long)ds_key_elems(k));
  return s->nkeys++;
}

int ds_schema_find(const dsSchema *s, const char *name) {
  for (int i = 0; i < s->nkeys; i++)
    if (!strcmp(s->keys[i].name, name)) return i;
  return -1;
}

static void shape_str(const dsKeySpec *k, char *buf, size_t n) {
  size_t off = (size_t)snprintf(buf, n, "%s(", ds_dtype_name(k->dtype));
  for (int i = 0; i < k->rank && off < n; i++)
    off += (size_t)snprintf(buf + off, n - off, i ? ",%lld" : "%lld", (long long)k->shape[i]);
  if (off < n) snprintf(buf + off, n - off, ")");
}

int ds_schema_compare(const dsSchema *a, const dsSchema *b) {
  if (a->action_dim != b->action_dim)
    return tk_error(TK_EFORMAT, "action size %d vs %d", a->action_dim, b->action_dim);
  if (a->state_dim != b->state_dim)
    return tk_error(TK_EFORMAT, "state size %d vs %d", a->state_dim, b->state_dim);
  for (int i = 0; i < a->nkeys; i++) {
    int j = ds_schema_find(b, a->keys[i].name);
    if (j < 0) return tk_error(TK_EFORMAT, "observation key %s only on one side", a->keys[i].name);
    const dsKeySpec *x = &a->keys[i], *y = &b->keys[j];
    int same = x->dtype == y->dtype && x->rank == y->rank;
    for (int d = 0; same && d < x->rank; d++)
      same = x->shape[d] == y->shape[d];
    if (!same) {
      char s1[96], s2[96];
      shape_str(x, s1, sizeof s1);
      shape_str(y, s2, sizeof s2);
      return tk_error(TK_EFORMAT, "observation key %s is %s vs %s", x->name, s1, s2);
    }
  }
  for (int j = 0; j < b->nkeys; j++)
    if (ds_schema_find(a, b->keys[j].name) < 0)
      return tk_error(TK_EFORMAT, "observation key %s only on one side", b->keys[j].name);
  return 0;
}

const dsFieldDesc ds_fields[DS_NFIELDS] = {
#define X(n, t, r) {#n, t, r},
    DS_STEP_FIELDS(X)
#undef X
};

int64_t ds_field_cols(int field, const dsSchema *s) {
  if (field == DS_FIELD_actions) return s->action_dim;
  if (field == DS_FIELD_states) return s->state_dim;
  return 1;
}
