/* core/tk_json.c -- the one strict config reader: a JSON object checked against a field table. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tk.h"

static int has_range(const tkJsonField *f) { return f->lo != 0 || f->hi != 0; }

static int is_int(const cJSON *v) {
  /* exact integers only, and only where a double holds every integer (|x| <= 2^53) */
  return cJSON_IsNumber(v) && isfinite(v->valuedouble) && v->valuedouble == floor(v->valuedouble) &&
         fabs(v->valuedouble) <= 9007199254740992.0;
}

/* Does v have one of the types? */
static int type_ok(const cJSON *v, unsigned types) {
  if ((types & TK_JSON_NUMBER) && cJSON_IsNumber(v) && isfinite(v->valuedouble)) return 1;
  if ((types & TK_JSON_INT) && is_int(v)) return 1;
  if ((types & TK_JSON_BOOL) && cJSON_IsBool(v)) return 1;
  if ((types & TK_JSON_STRING) && cJSON_IsString(v)) return 1;
  if ((types & TK_JSON_ARRAY) && cJSON_IsArray(v)) return 1;
  if ((types & TK_JSON_OBJECT) && cJSON_IsObject(v)) return 1;
  if ((types & TK_JSON_NULL) && cJSON_IsNull(v)) return 1;
  return 0;
}

/* "a number in [0, 1] or a string", as the message's noun phrase */
static void describe(unsigned types, const tkJsonField *f, char *buf, size_t n) {
  static const struct {
    unsigned bit;
    const char *name;
  } names[] = {{TK_JSON_INT, "an integer"},  {TK_JSON_NUMBER, "a number"}, {TK_JSON_BOOL, "true or false"},
               {TK_JSON_STRING, "a string"}, {TK_JSON_ARRAY, "an array"},  {TK_JSON_OBJECT, "an object"},
               {TK_JSON_NULL, "null"}};
  size_t off = 0;
  buf[0] = 0;
  if ((types & TK_JSON_INT) && (types & TK_JSON_NUMBER)) types &= ~(unsigned)TK_JSON_INT;
  for (int i = 0; i < (int)TK_ARRAY_LEN(names) && off < n; i++) {
    if (!(types & names[i].bit)) continue;
    int k = snprintf(buf + off, n - off, "%s%s", off ? " or " : "", names[i].name);
    if (k > 0) off += (size_t)k;
    if (off >= n) break;
    if (f && has_range(f)) {
      if (names[i].bit == TK_JSON_INT)
        k = snprintf(buf + off, n - off, " in [%.0f, %.0f]", f->lo, f->hi);
      else if (names[i].bit == TK_JSON_NUMBER)
        k = snprintf(buf + off, n - off, " in [%g, %g]", f->lo, f->hi);
      else if (names[i].bit == TK_JSON_ARRAY)
        k = snprintf(buf + off, n - off, " of %.0f to %.0f items", f->lo, f->hi);
      else
        k = 0;
      if (k > 0) off += (size_t)k;
    }
  }
}

/* The known keys, for the unknown-key message (left out when the list is long). */
static void known_keys(const tkJsonField *fields, char *buf, size_t n) {
  size_t off = 0;
  buf[0] = 0;
  for (const tkJsonField *f = fields; f->key; f++) {
    int k = snprintf(buf + off, n - off, "%s%s", off ? ", " : " (known: ", f->key);
    if (k < 0 || (size_t)k >= n - off - 1) { /* too long to be of help */
      buf[0] = 0;
      return;
    }
    off += (size_t)k;
  }
  if (off) snprintf(buf + off, n - off, ")");
}

static int check_value(const cJSON *v, const tkJsonField *f, const char *where) {
  char want[256];
  if (!type_ok(v, f->types)) {
    describe(f->types, f, want, sizeof want);
    return tk_error(TK_EFORMAT, "%s: \"%s\" must be %s", where, f->key, want);
  }
  if (cJSON_IsNumber(v) && has_range(f) && !(v->valuedouble >= f->lo && v->valuedouble <= f->hi)) {
    describe(f->types, f, want, sizeof want);
    return tk_error(TK_EFORMAT, "%s: \"%s\" must be %s (not %.17g)", where, f->key, want, v->valuedouble);
  }
  if (cJSON_IsArray(v)) {
    int n = cJSON_GetArraySize(v);
    if (has_range(f) && !(n >= f->lo && n <= f->hi)) {
      describe(TK_JSON_ARRAY, f, want, sizeof want);
      return tk_error(TK_EFORMAT, "%s: \"%s\" must be %s (not %d)", where, f->key, want, n);
    }
    int i = 0;
    for (const cJSON *e = v->child; e; e = e->next, i++) {
      if (f->items && !type_ok(e, f->items)) {
        describe(f->items, NULL, want, sizeof want);
        return tk_error(TK_EFORMAT, "%s: %s[%d] must be %s", where, f->key, i, want);
      }
      if (f->sub && cJSON_IsObject(e)) {
        char *sub = malloc(strlen(where) + strlen(f->key) + 32);
        if (!sub) return tk_error(TK_ENOMEM, "%s: out of memory", where);
        sprintf(sub, "%s: %s[%d]", where, f->key, i);
        int rc = tk_json_check(e, f->sub, sub);
        free(sub);
        if (rc) return rc;
      }
    }
  } else if (f->sub && cJSON_IsObject(v)) {
    char *sub = malloc(strlen(where) + strlen(f->key) + 8);
    if (!sub) return tk_error(TK_ENOMEM, "%s: out of memory", where);
    sprintf(sub, "%s: %s", where, f->key);
    int rc = tk_json_check(v, f->sub, sub);
    free(sub);
    if (rc) return rc;
  }
  return 0;
}

static const char *kind_of(const cJSON *v) {
  return cJSON_IsArray(v)    ? "an array"
         : cJSON_IsString(v) ? "a string"
         : cJSON_IsNumber(v) ? "a number"
         : cJSON_IsBool(v)   ? "true or false"
         : cJSON_IsNull(v)   ? "null"
                             : "not an object";
}

int tk_json_check(const cJSON *obj, const tkJsonField *fields, const char *where) {
  if (!cJSON_IsObject(obj))
    return tk_error(TK_EFORMAT, "%s: expected a JSON object {...}, not %s", where,
                    obj ? kind_of(obj) : "nothing");
  for (const cJSON *it = obj->child; it; it = it->next) {
    const tkJsonField *f = fields;
    while (f->key && strcmp(f->key, it->string)) /* case-sensitive: "Max_Step" is another key */
      f++;
    if (!f->key) {
      char known[400];
      known_keys(fields, known, sizeof known);
      return tk_error(TK_EFORMAT, "%s: unknown key \"%s\"%s", where, it->string, known);
    }
    for (const cJSON *p = obj->child; p != it; p = p->next) /* the reader would see only one of them */
      if (!strcmp(p->string, it->string))
        return tk_error(TK_EFORMAT, "%s: \"%s\" is given twice", where, f->key);
    int rc = check_value(it, f, where);
    if (rc) return rc;
  }
  for (const tkJsonField *f = fields; f->key; f++)
    if (f->required && !cJSON_GetObjectItemCaseSensitive(obj, f->key))
      return tk_error(TK_EFORMAT, "%s: \"%s\" is missing", where, f->key);
  return 0;
}

int tk_json_load_object(const char *path, const tkJsonField *fields, cJSON **out) {
  cJSON *j;
  *out = NULL;
  int rc = tk_json_load(path, &j);
  if (rc) return rc;
  if ((rc = tk_json_check(j, fields, path))) {
    cJSON_Delete(j);
    return rc;
  }
  *out = j;
  return 0;
}

int tk_json_bool(const cJSON *obj, const char *key, int dflt) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}
