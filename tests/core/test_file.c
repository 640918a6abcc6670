#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

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

/* Temp names are ours alone: never "<dst>.tmp" (a user's file), never an existing file, recognizable. */
Test(file, temp_names_are_unique_and_ours) {
  const char *d = tt_tmpdir();
  char dst[4200], user_tmp[4200], t1[4200], t2[4200];
  snprintf(dst, sizeof dst, "%s/out.h5", d);
  snprintf(user_tmp, sizeof user_tmp, "%s/out.h5.tmp", d);
  FILE *f = fopen(user_tmp, "w");
  fputs("mine", f);
  fclose(f);
  int a = tk_temp_beside(dst, t1, sizeof t1), b = tk_temp_beside(dst, t2, sizeof t2);
  cr_assert(a >= 0 && b >= 0, "%s", tk_errmsg());
  close(a);
  close(b);
  cr_assert_str_neq(t1, t2);
  cr_assert_str_neq(t1, user_tmp);
  cr_assert(!strncmp(t1, d, strlen(d)), "%s is not beside %s", t1, dst);
  cr_assert(tk_is_temp_name(strrchr(t1, '/') + 1), "%s", t1);
  cr_assert(!tk_is_temp_name("out.h5.tmp") && !tk_is_temp_name("out.h5.publish.tmp"));
  char *text;
  cr_assert_eq(tk_read_text(user_tmp, &text, NULL), 0);
  cr_assert_str_eq(text, "mine");
  free(text);
  /* a bare file name: the temp is in the current directory */
  char t3[4200];
  int c = tk_temp_beside("rel.h5", t3, sizeof t3);
  cr_assert(c >= 0);
  close(c);
  cr_assert(t3[0] == '.' && !strchr(t3, '/'), "%s", t3);
  unlink(t3);
}

Test(file, resolve_link_follows_symlinks_only) {
  const char *d = tt_tmpdir();
  char real[4200], link_path[4200], out[4200], dangling[4200];
  snprintf(real, sizeof real, "%s/real.h5", d);
  snprintf(link_path, sizeof link_path, "%s/link.h5", d);
  snprintf(dangling, sizeof dangling, "%s/dangling.h5", d);
  fclose(fopen(real, "w"));
  cr_assert_eq(symlink(real, link_path), 0);
  cr_assert_eq(symlink("nowhere.h5", dangling), 0);
  cr_assert_eq(tk_resolve_link(link_path, out, sizeof out), 0);
  char *rp = realpath(real, NULL);
  cr_assert_str_eq(out, rp);
  free(rp);
  cr_assert_eq(tk_resolve_link("plain/new.h5", out, sizeof out), 0);
  cr_assert_str_eq(out, "plain/new.h5");
  cr_assert_neq(tk_resolve_link(dangling, out, sizeof out), 0);
  cr_assert(strstr(tk_errmsg(), "missing"), "%s", tk_errmsg());
}

Test(file, read_limit_refuses_before_reading_all) {
  const char *d = tt_tmpdir();
  char p[4200];
  snprintf(p, sizeof p, "%s/big.json", d);
  FILE *f = fopen(p, "w");
  for (int i = 0; i < (9 << 20) / 8; i++)
    fputs("[1,2,3],", f);
  fclose(f);
  char *text = NULL;
  cr_assert_neq(tk_read_text_max(p, 1 << 20, &text, NULL), 0);
  cr_assert_null(text);
  cr_assert(strstr(tk_errmsg(), "larger than"), "%s", tk_errmsg());
  struct cJSON *j = NULL;
  cr_assert_neq(tk_json_load(p, &j), 0, "a 9 MiB config was parsed");
  cr_assert(strstr(tk_errmsg(), "big.json") && strstr(tk_errmsg(), "larger than"), "%s", tk_errmsg());
}
