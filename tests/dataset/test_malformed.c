/* Malformed inputs (tests/dataset/make_malformed.py writes 80+ of them with h5py and raw byte
 * edits): never a crash, a non-zero exit, and a one-line message naming the file and the
 * problem -- both in the library (ds_open, ds_validate, ds_load) and through the CLI. */
#include <criterion/criterion.h>

#include "ds.h"
#include "tk.h"
#include "tt.h"

static const char *corpus(void) {
  static char dir[4096];
  if (dir[0]) return dir;
  snprintf(dir, sizeof dir, "%s", tt_tmpdir());
  char *out = NULL;
  int rc = tt_run(&out, "%s %s %s", getenv("PYTHON") ? getenv("PYTHON") : "/usr/bin/python3",
                  tt_src("tests/dataset/make_malformed.py"), dir);
  cr_assert_eq(rc, 0, "make_malformed.py: %s", out);
  free(out);
  return dir;
}

typedef struct {
  char file[256], status[16], words[256];
} entry;

static int load_manifest(const char *dir, entry *e, int max) {
  char p[4300];
  snprintf(p, sizeof p, "%s/manifest.tsv", dir);
  FILE *f = fopen(p, "r");
  cr_assert_not_null(f);
  int n = 0;
  char line[1024];
  while (n < max && fgets(line, sizeof line, f)) {
    line[strcspn(line, "\n")] = 0;
    char *a = strtok(line, "\t"), *b = strtok(NULL, "\t"), *c = strtok(NULL, "\t");
    if (!a || !b) continue;
    snprintf(e[n].file, sizeof e[n].file, "%s", a);
    snprintf(e[n].status, sizeof e[n].status, "%s", b);
    snprintf(e[n].words, sizeof e[n].words, "%s", c ? c : "-");
    n++;
  }
  fclose(f);
  return n;
}

/* case-insensitive: does msg contain one of the '|'-separated words? */
static int has_word(const char *msg, const char *words) {
  char low[4096], w[256];
  size_t i;
  for (i = 0; msg[i] && i < sizeof low - 1; i++)
    low[i] = (char)(msg[i] >= 'A' && msg[i] <= 'Z' ? msg[i] + 32 : msg[i]);
  low[i] = 0;
  snprintf(w, sizeof w, "%s", words);
  for (char *tok = strtok(w, "|"); tok; tok = strtok(NULL, "|"))
    if (strstr(low, tok)) return 1;
  return 0;
}

static void count_cb(const char *line, void *user) {
  (void)line;
  ++*(int *)user;
}

Test(malformed, library_refuses_with_a_named_problem, .timeout = 600) {
  const char *dir = corpus();
  static entry e[256];
  int n = load_manifest(dir, e, 256), invalid = 0;
  cr_assert_geq(n, 60);
  for (int i = 0; i < n; i++) {
    char p[4400];
    snprintf(p, sizeof p, "%s/%s", dir, e[i].file);
    dsFile *f = NULL;
    int rc = ds_open(p, 0, &f);
    int problems = 0;
    int vrc = ds_validate(p, count_cb, &problems);
    if (!strcmp(e[i].status, "invalid")) {
      invalid++;
      cr_assert_neq(rc, 0, "%s: opened, but it is malformed (%s)", e[i].file, e[i].words);
      const char *m = tk_errmsg();
      cr_assert(strstr(m, e[i].file), "%s: message does not name the file: %s", e[i].file, m);
      cr_assert(has_word(m, e[i].words), "%s: message does not name the problem (%s): %s", e[i].file,
                e[i].words, m);
      cr_assert_null(strchr(m, '\n'), "%s: message is not one line", e[i].file);
      cr_assert(vrc > 0 && problems == vrc, "%s: validate found %d problems", e[i].file, vrc);
    } else {
      cr_assert_eq(rc, 0, "%s (%s): %s", e[i].file, e[i].status, tk_errmsg());
      cr_assert_eq(vrc, 0, "%s: validate found problems", e[i].file);
      /* a file that opens also loads (or refuses with a message), never crashes */
      dsLoaded L;
      if (ds_num_demos(f) > 0 && ds_load(f, NULL, &L) == 0) ds_loaded_free(&L);
      dsEpisode ep;
      if (ds_num_demos(f) > 0 && ds_read_episode(f, 0, &ep) == 0) ds_episode_free(&ep);
      ds_close(f);
    }
  }
  printf("malformed corpus: %d files, %d malformed, all refused with the problem named\n", n, invalid);
}

Test(malformed, cli_exits_nonzero_with_one_line, .timeout = 600) {
  const char *dir = corpus();
  static entry e[256];
  int n = load_manifest(dir, e, 256);
  for (int i = 0; i < n; i++) {
    if (strcmp(e[i].status, "invalid")) continue;
    for (int cmd = 0; cmd < 2; cmd++) {
      char *out = NULL;
      int rc =
          tt_run(&out, "%s %s %s/%s", tt_build("dataset/dataset"), cmd ? "info" : "validate", dir, e[i].file);
      cr_assert(rc == 1, "%s %s: exit %d (a crash is 128+signal): %s", cmd ? "info" : "validate", e[i].file,
                rc, out);
      cr_assert(has_word(out, e[i].words), "%s: output does not name the problem (%s): %s", e[i].file,
                e[i].words, out);
      if (cmd == 1) {
        size_t lines = 0;
        for (char *q = out; *q; q++)
          lines += *q == '\n';
        cr_assert_eq(lines, 1, "info %s printed %zu lines: %s", e[i].file, lines, out);
      }
      free(out);
    }
  }
}

/* A damaged global heap behind env_args sends libhdf5 1.10.8 into an endless loop: the
 * watchdog turns that into a message and exit status 1. */
Test(malformed, hdf5_loop_becomes_a_message, .timeout = 120) {
  const char *dir = corpus();
  char *out = NULL;
  int rc = tt_run(&out,
                  "%s -c \"b=bytearray(open('%s/valid.h5','rb').read()); i=b.find(b'GCOL'); b[i+9]=0x17; "
                  "open('%s/heap_loop.h5','wb').write(b)\"",
                  getenv("PYTHON") ? getenv("PYTHON") : "/usr/bin/python3", dir, dir);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  rc = tt_run(&out, "DK_OPEN_TIMEOUT=2 timeout 100 %s validate %s/heap_loop.h5", tt_build("dataset/dataset"),
              dir);
  cr_assert_eq(rc, 1, "exit %d: %s", rc, out);
  cr_assert(strstr(out, "heap_loop.h5") && strstr(out, "no progress") && strstr(out, "env_args"), "%s", out);
  free(out);
}
