/* Leak checking for the Criterion suites. Criterion runs every test in a worker process
 * (argv[0] "boxfort-worker", BXFI_MAP in its environment); with abort_on_error a leak there
 * fails the run. The parent runner itself leaks 48 bytes inside libcriterion 2.4.1 on some
 * runs, which is not ours: LeakSanitizer asks this hook and is switched off in the runner only. */
#include <stdlib.h>

int __lsan_is_turned_off(void);
int __lsan_is_turned_off(void) { return getenv("BXFI_MAP") == NULL; }
