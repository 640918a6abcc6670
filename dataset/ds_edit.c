/* dataset/ds_edit.c -- merge, split, filter, delete, trim, convert (being written). */
#include "ds_internal.h"

int ds_merge(const char *const *inputs, int n, const char *out) { (void)inputs; (void)n; (void)out; return tk_error(TK_EINVAL, "merge: not implemented yet"); }
int ds_split(const char *path, double valid_frac, uint64_t seed, const char *out) { (void)path; (void)valid_frac; (void)seed; (void)out; return tk_error(TK_EINVAL, "split: not implemented yet"); }
int ds_filter(const char *path, const dsFilterOpts *o, const char *out, int *kept) { (void)path; (void)o; (void)out; (void)kept; return tk_error(TK_EINVAL, "filter: not implemented yet"); }
int ds_delete(const char *path, const char *const *demos, int n, const char *out) { (void)path; (void)demos; (void)n; (void)out; return tk_error(TK_EINVAL, "delete: not implemented yet"); }
int ds_trim(const char *path, const char *demo, int64_t start, int64_t end, const char *out) { (void)path; (void)demo; (void)start; (void)end; (void)out; return tk_error(TK_EINVAL, "trim: not implemented yet"); }
int ds_convert(const char *path, const char *to, const char *out) { (void)path; (void)to; (void)out; return tk_error(TK_EINVAL, "convert: not implemented yet"); }
