#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "tk.h"
#include "tt.h"

Test(file, copy_is_exact) {
  const char *d = tt_tmpdir();
  char a[4200], b[4200];
  snprintf(a, sizeof a, "%s/a.bin", d);
  snprintf(b, sizeof b, "%s/b.bin", d);
  FILE *f = fopen(a, "wb");
  for (int i = 0; i < 300000; i++)
    fputc((i * 131) & 255, f);
  fclose(f);
  cr_assert_eq(tk_copy_file(a, b), 0, "%s", tk_errmsg());
  char *x, *y;
  size_t nx, ny;
  cr_assert_eq(tk_read_text(a, &x, &nx), 0);
  cr_assert_eq(tk_read_text(b, &y, &ny), 0);
  cr_assert_eq(nx, ny);
  cr_assert_eq(memcmp(x, y, nx), 0);
  free(x);
  free(y);
}

Test(file, missing_source_names_it) {
  int rc = tk_copy_file("/nonexistent/zz.h5", "/tmp/never");
  cr_assert_eq(rc, TK_EIO);
  cr_assert(strstr(tk_errmsg(), "/nonexistent/zz.h5"), "%s", tk_errmsg());
}

Test(json, bad_json_names_file) {
  const char *d = tt_tmpdir();
  char p[4200];
  snprintf(p, sizeof p, "%s/c.json", d);
  FILE *f = fopen(p, "w");
  fputs("{\"a\": 1,, }", f);
  fclose(f);
  struct cJSON *j;
  cr_assert_eq(tk_json_load(p, &j), TK_EFORMAT);
  cr_assert(strstr(tk_errmsg(), "c.json"), "%s", tk_errmsg());
}
