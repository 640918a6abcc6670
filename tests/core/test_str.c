/* core/tk_str.c: growing strings past their first allocation, reset, and the empty cases. */
#include <criterion/criterion.h>
#include <string.h>

#include "tk.h"

Test(str, grows_formats_resets) {
  tkStr b = {0};
  cr_assert_str_eq(tk_str_get(&b), "", "empty: \"\"");
  for (int i = 0; i < 20000; i++) /* about 110 KB: past the first 64 KiB */
    tk_str_printf(&b, "%d,", i);
  tk_str_puts(&b, "end");
  tk_str_put(&b, "xyz", 2);
  cr_assert(!b.oom);
  cr_assert_eq(b.n, strlen(b.p), "n is the length");
  cr_assert(b.cap > 65536);
  cr_assert_eq(strncmp(b.p, "0,1,2,3,", 8), 0);
  cr_assert_str_eq(b.p + b.n - 11, "19999,endxy", "the tail");
  char *o = tk_str_reserve(&b, 3);
  cr_assert(o == b.p + b.n);
  size_t cap = b.cap;
  cr_assert_str_eq(tk_str_get(tk_str_reset(&b)), "", "reset: empty");
  cr_assert_eq(b.cap, cap, "reset keeps the memory");
  tk_str_printf(&b, "%s=%.2f", "pi", 3.14159);
  cr_assert_str_eq(tk_str_get(&b), "pi=3.14");
  tk_str_free(&b);
  cr_assert(b.p == NULL && b.n == 0 && b.cap == 0);
}
