#include <criterion/criterion.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
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

/* The one numeric-option parser: NaN, infinities, overflow, fractions for integers, trailing or
 * leading junk and out-of-range values are refused with "<name> <value>: expected ..." (one line). */
Test(parse, options_refuse_what_is_not_a_number_in_range) {
  double d = -7;
  int64_t k = -7;
  const char *bad_f64[] = {"nan",   "NaN", "-nan", "inf", "-inf", "infinity",
                           "1e400", "",    " 1",   "1 ",  "1x",   "0.5.5"};
  for (size_t i = 0; i < sizeof bad_f64 / sizeof *bad_f64; i++) {
    cr_expect_eq(tk_opt_f64("--rate", bad_f64[i], 1, 1000, &d), TK_EINVAL, "'%s' accepted", bad_f64[i]);
    cr_expect(strstr(tk_errmsg(), "--rate") && strstr(tk_errmsg(), "expected a number in [1, 1000]"), "%s",
              tk_errmsg());
    cr_expect_null(strchr(tk_errmsg(), '\n'));
  }
  cr_expect_eq(d, -7, "a refused value leaves the output alone");
  cr_expect_neq(tk_opt_f64("--rate", "1000.5", 1, 1000, &d), 0);
  cr_expect_neq(tk_opt_f64("--rate", "0.5", 1, 1000, &d), 0);
  cr_expect_neq(tk_opt_f64("--rate", NULL, 1, 1000, &d), 0);
  cr_assert_eq(tk_opt_f64("--rate", "1e3", 1, 1000, &d), 0);
  cr_expect_eq(d, 1000);
  cr_assert_eq(tk_opt_f64("--rate", "20.5", 1, 1000, &d), 0);
  cr_expect_eq(d, 20.5);

  const char *bad_int[] = {"nan",
                           "inf",
                           "2.5",
                           "1e30",
                           "1e-400",
                           "9223372036854775808",
                           "-9223372036854775809",
                           "99999999999999999999",
                           "",
                           " 3",
                           "3 ",
                           "3x",
                           "0x",
                           "1e19"};
  for (size_t i = 0; i < sizeof bad_int / sizeof *bad_int; i++) {
    cr_expect_eq(tk_opt_int("--min-len", bad_int[i], 0, INT64_MAX, &k), TK_EINVAL, "'%s' accepted as %lld",
                 bad_int[i], (long long)k);
    cr_expect(strstr(tk_errmsg(), "--min-len") && strstr(tk_errmsg(), "expected an integer"), "%s",
              tk_errmsg());
  }
  cr_expect_eq(k, -7);
  cr_expect_neq(tk_opt_int("--epochs", "0", 1, 10, &k), 0);
  cr_expect_neq(tk_opt_int("--epochs", "11", 1, 10, &k), 0);
  cr_expect_neq(tk_opt_int("--epochs", "-1", 0, 10, &k), 0);
  cr_assert_eq(tk_opt_int("--epochs", "1e3", 1, 10000, &k), 0, "%s", tk_errmsg());
  cr_expect_eq(k, 1000);
  cr_assert_eq(tk_opt_int("--seed", "9223372036854775807", 0, INT64_MAX, &k), 0);
  cr_expect_eq(k, INT64_MAX);
  cr_assert_eq(tk_opt_int("--frame", "-9223372036854775808", INT64_MIN, 0, &k), 0);
  cr_expect_eq(k, INT64_MIN);
  cr_assert_eq(tk_opt_int("--seed", "9007199254740993", 0, INT64_MAX, &k), 0);
  cr_expect_eq(k, 9007199254740993LL, "integers are parsed as integers, not through a double");
}

Test(parse, hex) {
  uint64_t v = 7;
  cr_assert_eq(tk_opt_hex("VID", "256f", 0xFFFF, &v), 0);
  cr_expect_eq(v, 0x256f);
  cr_assert_eq(tk_opt_hex("PID", "0xC635", 0xFFFF, &v), 0);
  cr_expect_eq(v, 0xc635);
  const char *bad[] = {"", "0x", "-1", "+1", " 1f", "1f ", "10000", "g", "ffffffffffffffffff", "1:2"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    v = 7;
    cr_expect_neq(tk_opt_hex("VID", bad[i], 0xFFFF, &v), 0, "'%s' accepted", bad[i]);
    cr_expect_eq(v, 7);
    cr_expect(strstr(tk_errmsg(), "VID") && strstr(tk_errmsg(), "hexadecimal"), "%s", tk_errmsg());
  }
}

/* Environment variables go through the same checks: unset or empty is the default, anything else must
 * parse (DK_OPEN_TIMEOUT=abc used to be atof's 0: no watchdog). */
Test(parse, environment) {
  double d;
  int64_t k;
  unsetenv("TK_TEST_NUM");
  cr_assert_eq(tk_env_f64("TK_TEST_NUM", 0, 100, 30, &d), 0);
  cr_expect_eq(d, 30);
  setenv("TK_TEST_NUM", "", 1);
  cr_assert_eq(tk_env_f64("TK_TEST_NUM", 0, 100, 30, &d), 0);
  cr_expect_eq(d, 30);
  setenv("TK_TEST_NUM", "12.5", 1);
  cr_assert_eq(tk_env_f64("TK_TEST_NUM", 0, 100, 30, &d), 0);
  cr_expect_eq(d, 12.5);
  cr_expect_neq(tk_env_int("TK_TEST_NUM", 0, 100, 30, &k), 0, "12.5 is not an integer");
  const char *bad[] = {"abc", "nan", "inf", "1e30", "-1", "5s"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    setenv("TK_TEST_NUM", bad[i], 1);
    cr_expect_eq(tk_env_f64("TK_TEST_NUM", 0, 100, 30, &d), TK_EINVAL, "'%s' accepted", bad[i]);
    cr_expect(strstr(tk_errmsg(), "TK_TEST_NUM=") && strstr(tk_errmsg(), bad[i]), "%s", tk_errmsg());
  }
  unsetenv("TK_TEST_NUM");
  /* the core's own: TK_LOG and TK_PROGRESS */
  cr_expect_eq(tk_env_check(), 0, "%s", tk_errmsg());
  setenv("TK_PROGRESS", "yes", 1);
  cr_expect_neq(tk_env_check(), 0);
  cr_expect(strstr(tk_errmsg(), "TK_PROGRESS"), "%s", tk_errmsg());
  setenv("TK_PROGRESS", "1", 1);
  cr_expect_eq(tk_env_check(), 0, "%s", tk_errmsg());
  unsetenv("TK_PROGRESS");
  setenv("TK_LOG", "verbose", 1);
  cr_expect_neq(tk_env_check(), 0);
  cr_expect(strstr(tk_errmsg(), "TK_LOG=verbose"), "%s", tk_errmsg());
  setenv("TK_LOG", "WARN", 1);
  cr_expect_eq(tk_env_check(), 0, "%s", tk_errmsg());
  unsetenv("TK_LOG");
}
