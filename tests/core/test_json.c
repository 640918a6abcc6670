/* The one strict config reader (tk_json_check, tk_json_load_object): every key known, every value of
 * its type and range, the top level an object, nested objects through their sub-tables, files past
 * the 8 MiB limit refused before they are read. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "tk.h"
#include "tt.h"

static const tkJsonField joint_fields[] = {
    {.key = "id", .types = TK_JSON_INT, .required = 1, .lo = 0, .hi = 253},
    {.key = "min", .types = TK_JSON_NUMBER},
    {.key = NULL},
};
static const tkJsonField limit_fields[] = {
    {.key = "max_step", .types = TK_JSON_NUMBER, .lo = 1e-4, .hi = 3.2},
    {.key = NULL},
};
static const tkJsonField fields[] = {
    {.key = "name", .types = TK_JSON_STRING},
    {.key = "max_step", .types = TK_JSON_NUMBER, .lo = 1e-4, .hi = 3.2},
    {.key = "retries", .types = TK_JSON_INT},
    {.key = "quiet", .types = TK_JSON_BOOL},
    {.key = "hidden", .types = TK_JSON_ARRAY | TK_JSON_STRING, .items = TK_JSON_INT},
    {.key = "joints", .types = TK_JSON_ARRAY, .lo = 1, .hi = 3, .items = TK_JSON_OBJECT, .sub = joint_fields},
    {.key = "limits", .types = TK_JSON_OBJECT, .sub = limit_fields},
    {.key = "free", .types = TK_JSON_OBJECT}, /* any object */
    {.key = NULL},
};

/* check text; 0, or the code with the message containing want (and want2) */
static int check(const char *text, const char *want, const char *want2) {
  cJSON *j = cJSON_Parse(text);
  cr_assert(j, "test JSON: %s", text);
  int rc = tk_json_check(j, fields, "robot.json");
  cJSON_Delete(j);
  if (rc) {
    cr_expect_eq(rc, TK_EFORMAT);
    cr_expect(strncmp(tk_errmsg(), "robot.json: ", 12) == 0, "names the file: %s", tk_errmsg());
    cr_expect_null(strchr(tk_errmsg(), '\n'), "one line: %s", tk_errmsg());
    if (want) cr_expect(strstr(tk_errmsg(), want), "%s: '%s' wanted in: %s", text, want, tk_errmsg());
    if (want2) cr_expect(strstr(tk_errmsg(), want2), "%s: '%s' wanted in: %s", text, want2, tk_errmsg());
  } else {
    cr_expect(!want, "%s was accepted", text);
  }
  return rc;
}

Test(json_check, accepts_what_the_table_states) {
  cr_expect_eq(check("{}", NULL, NULL), 0);
  cr_expect_eq(
      check("{\"name\": \"x\", \"max_step\": 0.5, \"retries\": 3, \"quiet\": false, \"hidden\": [1, 2],"
            " \"joints\": [{\"id\": 1, \"min\": -1}, {\"id\": 253}], \"limits\": {\"max_step\": 1},"
            " \"free\": {\"anything\": [1, \"a\"]}}",
            NULL, NULL),
      0);
  cr_expect_eq(check("{\"hidden\": \"1024,1024\", \"retries\": 1e3}", NULL, NULL), 0);
}

Test(json_check, refuses_naming_the_key) {
  check("[1, 2]", "expected a JSON object", "array");
  check("3", "expected a JSON object", "number");
  check("null", "expected a JSON object", NULL);
  check("{\"maxstep\": 0.1}", "unknown key \"maxstep\"", "known: name, max_step");
  check("{\"Max_Step\": 0.1}", "unknown key \"Max_Step\"", NULL);
  check("{\"max_step\": \"0.1\"}", "\"max_step\" must be a number in [0.0001, 3.2]", NULL);
  check("{\"max_step\": 5}", "\"max_step\" must be a number in [0.0001, 3.2] (not 5)", NULL);
  check("{\"max_step\": true}", "\"max_step\" must be", NULL);
  check("{\"max_step\": null}", "\"max_step\" must be", NULL);
  check("{\"retries\": 2.5}", "\"retries\" must be an integer", NULL);
  check("{\"retries\": 1e300}", "\"retries\" must be an integer", NULL);
  check("{\"quiet\": 1}", "\"quiet\" must be true or false", NULL);
  check("{\"quiet\": \"true\"}", "\"quiet\" must be true or false", NULL);
  check("{\"name\": [\"x\"]}", "\"name\" must be a string", NULL);
  check("{\"hidden\": {\"a\": 1}}", "\"hidden\" must be a string or an array", NULL);
  check("{\"hidden\": [1, \"2\"]}", "hidden[1] must be an integer", NULL);
  check("{\"hidden\": [1, 2.5]}", "hidden[1] must be an integer", NULL);
  check("{\"joints\": []}", "\"joints\" must be an array of 1 to 3 items (not 0)", NULL);
  check("{\"joints\": [{\"id\": 1}, {\"id\": 2}, {\"id\": 3}, {\"id\": 4}]}", "1 to 3 items (not 4)", NULL);
  check("{\"joints\": [{\"id\": 1}, 3]}", "joints[1] must be an object", NULL);
  check("{\"joints\": [{\"id\": 1}, {\"id\": 2, \"mn\": 0}]}", "robot.json: joints[1]: unknown key \"mn\"",
        NULL);
  check("{\"joints\": [{\"min\": 0}]}", "robot.json: joints[0]: \"id\" is missing", NULL);
  check("{\"joints\": [{\"id\": 254}]}", "joints[0]: \"id\" must be an integer in [0, 253]", NULL);
  check("{\"limits\": {\"maxstep\": 1}}", "robot.json: limits: unknown key \"maxstep\"", NULL);
  check("{\"limits\": [1]}", "\"limits\" must be an object", NULL);
  check("{\"max_step\": 0.1, \"max_step\": 3}", "\"max_step\" is given twice", NULL);
}

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  cr_assert(f, "%s", path);
  fputs(text, f);
  fclose(f);
}

Test(json_check, load_object_names_the_file) {
  const char *d = tt_tmpdir();
  char path[4200];
  snprintf(path, sizeof path, "%s/cfg.json", d);
  cJSON *j = (cJSON *)1;
  write_text(path, "{\"name\": \"arm\", \"max_step\": 0.2, \"quiet\": true}");
  cr_assert_eq(tk_json_load_object(path, fields, &j), 0, "%s", tk_errmsg());
  cr_expect_str_eq(tk_json_str(j, "name", ""), "arm");
  cr_expect_eq(tk_json_num(j, "max_step", 0), 0.2);
  cr_expect_eq(tk_json_bool(j, "quiet", 0), 1);
  cr_expect_eq(tk_json_bool(j, "absent", 7), 7);
  cJSON_Delete(j);
  write_text(path, "{\"nmae\": \"arm\"}");
  cr_assert_neq(tk_json_load_object(path, fields, &j), 0);
  cr_expect_null(j);
  cr_expect(strstr(tk_errmsg(), path) && strstr(tk_errmsg(), "\"nmae\""), "%s", tk_errmsg());
  write_text(path, "[{\"name\": \"arm\"}]");
  cr_assert_neq(tk_json_load_object(path, fields, &j), 0);
  cr_expect(strstr(tk_errmsg(), path) && strstr(tk_errmsg(), "object"), "%s", tk_errmsg());
  /* past 8 MiB: refused at once (the limit is checked while reading, the rest never read) */
  FILE *f = fopen(path, "w");
  cr_assert(f);
  fputs("{\"name\": \"", f);
  for (int i = 0; i < 9 * 1024; i++)
    fprintf(f, "%01024d", 0);
  fputs("\"}", f);
  fclose(f);
  double t0 = tk_now_s();
  cr_assert_neq(tk_json_load_object(path, fields, &j), 0);
  cr_expect_lt(tk_now_s() - t0, 1.0);
  cr_expect(strstr(tk_errmsg(), path) && strstr(tk_errmsg(), "larger than"), "%s", tk_errmsg());
}
