/* tests/capture/fuzz/fuzz_status.c -- libFuzzer target for the servo status (and request)
 * parsers. Build and run with run_fuzz.sh (clang -fsanitize=fuzzer,address,undefined). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "srv_fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  int rc = srv_fuzz_one(data, size, NULL);
  if (rc) {
    fprintf(stderr, "srv_fuzz_one: property %d broken\n", rc);
    abort();
  }
  return 0;
}
