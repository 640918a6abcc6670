/* Files made by an earlier build (tests/fixtures/v1, see its README) load, act, record and replay
 * bit for bit as that build did: policies through today's bc-eval (their rollouts' digest and mean
 * return), the recording through today's teleop (the same command records the same data) and
 * dataset replay --check (the stored states are reached again exactly). */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>

#include "tt.h"
#include "tt_cli.h"

TestSuite(saved, .fini = tt_pool_free);

static cJSON *expected(void) {
  char *text = slurp(tt_src("tests/fixtures/v1/expected.json"), NULL);
  cr_assert(text, "tests/fixtures/v1/expected.json is missing");
  cJSON *j = cJSON_Parse(text);
  cr_assert(j, "expected.json is not JSON");
  return j;
}

static const char *py(void) { return getenv("PYTHON") ? getenv("PYTHON") : "/usr/bin/python3"; }

static char *digest(const char *path) {
  char *out = NULL;
  int rc = tt_run(&out, "%s %s %s", py(), tt_src("tests/bc/rollout_digest.py"), path);
  keep(out);
  cr_assert_eq(rc, 0, "rollout_digest.py %s: %s", path, out);
  char *nl = strchr(out, '\n');
  if (nl) *nl = 0;
  return out;
}

Test(saved, policies_act_as_before, .timeout = 300) {
  cJSON *e = expected();
  const char *d = tt_tmpdir();
  const cJSON *p;
  cJSON_ArrayForEach(p, cJSON_GetObjectItem(e, "policies")) {
    const char *file = cJSON_GetObjectItem(p, "file")->valuestring;
    char src[4200], *out, *err;
    snprintf(src, sizeof src, "%s", tt_src("tests/fixtures/v1"));
    int rc = run2(d, &out, &err, "%s %s/%s --episodes 3 --workers 1 --save %s/r_%s --json --quiet",
                  tt_build("bc/bc-eval"), src, file, d, file);
    cr_assert_eq(rc, 0, "bc-eval %s: %s", file, err);
    cJSON *r = cJSON_Parse(out);
    cr_assert(r, "bc-eval --json: %s", out);
    double want = cJSON_GetObjectItem(p, "mean_return")->valuedouble,
           got = cJSON_GetObjectItem(r, "mean_return")->valuedouble;
    cr_expect_eq(got, want, "%s: mean return %.17g, the earlier build gave %.17g (difference %g)", file, got,
                 want, got - want);
    cJSON_Delete(r);
    char rollouts[4300];
    snprintf(rollouts, sizeof rollouts, "%s/r_%s", d, file);
    cr_expect_str_eq(digest(rollouts), cJSON_GetObjectItem(p, "digest")->valuestring,
                     "%s: the rollouts differ from the earlier build's", file);
  }
  cJSON_Delete(e);
}

Test(saved, recording_is_made_and_replayed_as_before, .timeout = 300) {
  cJSON *e = expected();
  const cJSON *rec = cJSON_GetObjectItem(e, "recording");
  const char *d = tt_tmpdir();
  char path[4200], *out, *err;
  snprintf(path, sizeof path, "%s/again.h5", d);
  int rc = run2(d, &out, &err, "%s %s --quiet --out %s", tt_build("teleop/teleop"),
                cJSON_GetObjectItem(rec, "command")->valuestring, path);
  cr_assert_eq(rc, 0, "teleop: %s", err);
  const char *want = cJSON_GetObjectItem(rec, "digest")->valuestring;
  cr_expect_str_eq(digest(path), want, "the same command records other data than the earlier build");
  const char *old = keep(strdup(tt_src("tests/fixtures/v1/reach.h5")));
  cr_expect_str_eq(digest(old), want, "the fixture itself changed");
  rc = run2(d, &out, &err, "%s replay --check %s --tolerance 0", tt_build("dataset/dataset"), old);
  cr_assert_eq(rc, 0, "replay --check of the earlier build's recording: %s%s", out, err);
  cr_assert(strstr(out, "0 above the tolerance"), "%s", out);
  rc = run2(d, &out, &err, "%s validate %s", tt_build("dataset/dataset"), old);
  cr_assert_eq(rc, 0, "validate: %s%s", out, err);
  cJSON_Delete(e);
}
