#include <criterion/criterion.h>
#include <pthread.h>
#include <string.h>

#include "tk.h"

static int fails_with_context(void) {
  int rc = tk_error(TK_EIO, "open %s: %s", "x.h5", "No such file");
  return tk_error_wrap(rc, "load dataset");
}

Test(error, message_and_code) {
  int rc = tk_error(TK_EFORMAT, "bad %d", 7);
  cr_assert_eq(rc, TK_EFORMAT);
  cr_assert_str_eq(tk_errmsg(), "bad 7");
  tk_error_clear();
  cr_assert_str_eq(tk_errmsg(), "");
}

Test(error, wrap_prefixes) {
  cr_assert_eq(fails_with_context(), TK_EIO);
  cr_assert_str_eq(tk_errmsg(), "load dataset: open x.h5: No such file");
}

static void *other_thread(void *arg) {
  (void)arg;
  tk_error(TK_EINVAL, "from the other thread");
  return NULL;
}

Test(error, thread_local) {
  tk_error(TK_EIO, "mine");
  pthread_t th;
  pthread_create(&th, NULL, other_thread, NULL);
  pthread_join(th, NULL);
  cr_assert_str_eq(tk_errmsg(), "mine");
}

Test(error, long_message_truncated_not_overflowed) {
  char big[5000];
  memset(big, 'a', sizeof big - 1);
  big[sizeof big - 1] = 0;
  tk_error(TK_EIO, "%s", big);
  cr_assert_eq(strlen(tk_errmsg()), TK_ERRMSG_MAX - 1);
}

Test(parse, numbers) {
  int64_t i;
  double d;
  cr_assert_eq(tk_parse_i64("42", &i), 0);
  cr_assert_eq(i, 42);
  cr_assert_neq(tk_parse_i64("42x", &i), 0);
  cr_assert_neq(tk_parse_i64("", &i), 0);
  cr_assert_eq(tk_parse_f64("0.25", &d), 0);
  cr_assert_float_eq(d, 0.25, 1e-12);
  cr_assert_neq(tk_parse_f64("abc", &d), 0);
}
