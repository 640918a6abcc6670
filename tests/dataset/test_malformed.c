/* Malformed inputs (tests/dataset/make_malformed.py writes 80+ of them with h5py and raw byte
 * edits): never a crash, a non-zero exit, and a one-line message naming the file and the
 * problem -- both in the library (ds_open, ds_validate, ds_load) and through the CLI. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

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

static void refuse_all(double timeout) {
  ds_set_open_timeout(timeout);
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
  printf("malformed corpus%s: %d files, %d malformed, all refused with the problem named\n",
         timeout > 0 ? " (checked in a child process)" : "", n, invalid);
}

Test(malformed, library_refuses_with_a_named_problem, .timeout = 600) { refuse_all(0); }
/* the same through the watchdog: the check runs in a child process, its findings come back whole */
Test(malformed, library_refuses_under_the_watchdog, .timeout = 600) { refuse_all(30); }

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
/* heap_loop.h5: valid.h5 with a damaged global heap behind env_args (libhdf5 1.10.8 loops on it) */
static const char *make_heap_loop(void) {
  const char *dir = corpus();
  char *out = NULL;
  int rc = tt_run(&out,
                  "%s -c \"b=bytearray(open('%s/valid.h5','rb').read()); i=b.find(b'GCOL'); b[i+9]=0x17; "
                  "open('%s/heap_loop.h5','wb').write(b)\"",
                  getenv("PYTHON") ? getenv("PYTHON") : "/usr/bin/python3", dir, dir);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  return dir;
}

Test(malformed, hdf5_loop_becomes_a_message, .timeout = 120) {
  const char *dir = make_heap_loop();
  char *out = NULL;
  int rc = tt_run(&out, "DK_OPEN_TIMEOUT=2 timeout 100 %s validate %s/heap_loop.h5",
                  tt_build("dataset/dataset"), dir);
  cr_assert_eq(rc, 1, "exit %d: %s", rc, out);
  cr_assert(strstr(out, "heap_loop.h5") && strstr(out, "no progress") && strstr(out, "env_args"), "%s", out);
  free(out);
}

/* ---- the watchdog in a library host: per-open state, and the host goes on ---- */
typedef struct {
  char path[4400];
  int rc;
  char msg[1024];
  double seconds;
  int opens;          /* the fine thread: opens that succeeded */
  volatile int *stop; /* the fine thread runs until the hanging one returns */
} openJob;

static void *open_hanging(void *arg) {
  openJob *j = arg;
  double t0 = tk_now_s();
  dsFile *f = NULL;
  j->rc = ds_open(j->path, 0, &f);
  j->seconds = tk_now_s() - t0;
  snprintf(j->msg, sizeof j->msg, "%s", tk_errmsg()); /* the message is the thread's own */
  ds_close(f);
  *j->stop = 1;
  return NULL;
}

static void *open_fine(void *arg) {
  openJob *j = arg;
  do {
    dsFile *f = NULL;
    j->rc = ds_open(j->path, 0, &f);
    if (j->rc) {
      snprintf(j->msg, sizeof j->msg, "%s", tk_errmsg());
      break;
    }
    dsLoaded L;
    j->rc = ds_load(f, NULL, &L);
    if (j->rc) snprintf(j->msg, sizeof j->msg, "%s", tk_errmsg());
    ds_loaded_free(&L);
    ds_close(f);
    if (j->rc) break;
    j->opens++;
  } while (!*j->stop);
  return NULL;
}

/* Two threads open two files at once: one file sends libhdf5 into a loop, the other is fine. The hanging
 * open returns TK_ETIMEOUT naming its file and object (it no longer ends the process), the fine one opens
 * and loads again and again meanwhile, and afterwards the process still reads files through HDF5. */
Test(malformed, concurrent_opens_one_hanging, .timeout = 120) {
  const char *dir = make_heap_loop();
  ds_set_open_timeout(2);
  volatile int stop = 0;
  openJob hang = {.stop = &stop}, fine = {.stop = &stop};
  snprintf(hang.path, sizeof hang.path, "%s/heap_loop.h5", dir);
  snprintf(fine.path, sizeof fine.path, "%s/valid.h5", dir);
  pthread_t th, tf;
  cr_assert_eq(pthread_create(&th, NULL, open_hanging, &hang), 0);
  cr_assert_eq(pthread_create(&tf, NULL, open_fine, &fine), 0);
  pthread_join(th, NULL);
  pthread_join(tf, NULL);
  printf("hanging open: rc %d after %.2f s: %s\nfine thread: %d opens and loads meanwhile\n", hang.rc,
         hang.seconds, hang.msg, fine.opens);
  cr_assert_eq(hang.rc, TK_ETIMEOUT, "%d: %s", hang.rc, hang.msg);
  cr_assert(strstr(hang.msg, "heap_loop.h5") && strstr(hang.msg, "no progress") &&
                strstr(hang.msg, "env_args"),
            "%s", hang.msg);
  cr_assert(hang.seconds >= 2 && hang.seconds < 30, "gave up after %.2f s", hang.seconds);
  cr_assert_eq(fine.rc, 0, "the fine file: %s", fine.msg);
  cr_assert_geq(fine.opens, 2, "the fine thread opened %d times while the other hung", fine.opens);
  /* the host goes on: HDF5 is not held by a looping thread, and validate refuses the same way */
  dsFile *f = NULL;
  cr_assert_eq(ds_open(fine.path, 0, &f), 0, "%s", tk_errmsg());
  dsEpisode ep;
  cr_assert_eq(ds_read_episode(f, 0, &ep), 0, "%s", tk_errmsg());
  ds_episode_free(&ep);
  ds_close(f);
  cr_assert_eq(ds_validate(hang.path, NULL, NULL), TK_ETIMEOUT, "%s", tk_errmsg());
  cr_assert(strstr(tk_errmsg(), "env_args"), "%s", tk_errmsg());
}

/* What the watchdog costs per open (a fork, a pipe, the result sent back), in a small process and in one
 * holding 512 MiB (a fork copies the page tables), and that it opens the same file the same way. */
static double open_ms(const char *path, int n) {
  double t0 = tk_now_s();
  for (int i = 0; i < n; i++) {
    dsFile *f = NULL;
    cr_assert_eq(ds_open(path, 0, &f), 0, "%s", tk_errmsg());
    ds_close(f);
  }
  return (tk_now_s() - t0) * 1e3 / n;
}

Test(malformed, watchdog_cost_and_same_result, .timeout = 300) {
  const char *dir = corpus();
  char p[4400];
  snprintf(p, sizeof p, "%s/valid.h5", dir);
  dsFile *a = NULL, *b = NULL;
  ds_set_open_timeout(0);
  cr_assert_eq(ds_open(p, 0, &a), 0, "%s", tk_errmsg());
  ds_set_open_timeout(30);
  cr_assert_eq(ds_open(p, 0, &b), 0, "%s", tk_errmsg());
  /* the same file either way: demos, schema, env, masks, and what loads */
  cr_assert_eq(ds_num_demos(a), ds_num_demos(b));
  cr_assert_eq(ds_total_samples(a), ds_total_samples(b));
  cr_assert_eq(ds_is_native(a), ds_is_native(b));
  cr_assert_eq(memcmp(ds_schema(a), ds_schema(b), sizeof(dsSchema)), 0);
  cr_assert_str_eq(ds_env_name(a), ds_env_name(b));
  cr_assert_str_eq(ds_env_args(a), ds_env_args(b));
  for (int i = 0; i < ds_num_demos(a); i++)
    cr_assert_eq(memcmp(ds_demo(a, i), ds_demo(b, i), sizeof(dsDemoInfo)), 0, "demo %d", i);
  cr_assert_eq(ds_num_masks(a), ds_num_masks(b));
  for (int m = 0; m < ds_num_masks(a); m++) {
    int *pa, *pb, na, nb;
    cr_assert_str_eq(ds_mask_name(a, m), ds_mask_name(b, m));
    cr_assert_eq(ds_mask(a, ds_mask_name(a, m), &pa, &na), 0);
    cr_assert_eq(ds_mask(b, ds_mask_name(b, m), &pb, &nb), 0);
    cr_assert(na == nb && !memcmp(pa, pb, sizeof(int) * (size_t)na), "mask %s", ds_mask_name(a, m));
    free(pa);
    free(pb);
  }
  dsLoaded la, lb;
  dsLoadOpts lo = {.load_next_obs = 1};
  cr_assert_eq(ds_load(a, &lo, &la), 0, "%s", tk_errmsg());
  cr_assert_eq(ds_load(b, &lo, &lb), 0, "%s", tk_errmsg());
  cr_assert(la.n == lb.n && la.obs_dim == lb.obs_dim && la.act_dim == lb.act_dim);
  cr_assert_eq(memcmp(la.obs, lb.obs, (size_t)la.n * (size_t)la.obs_dim * 4), 0);
  cr_assert_eq(memcmp(la.next_obs, lb.next_obs, (size_t)la.n * (size_t)la.obs_dim * 4), 0);
  cr_assert_eq(memcmp(la.actions, lb.actions, (size_t)la.n * (size_t)la.act_dim * 4), 0);
  ds_loaded_free(&la);
  ds_loaded_free(&lb);
  ds_close(a);
  ds_close(b);

  const int n = 40;
  ds_set_open_timeout(0);
  double off = open_ms(p, n);
  ds_set_open_timeout(30);
  double on = open_ms(p, n);
  size_t big = (size_t)512 << 20;
  char *mem = malloc(big);
  cr_assert_not_null(mem);
  memset(mem, 1, big); /* touched: mapped pages the fork must copy the tables of */
  ds_set_open_timeout(0);
  double off_big = open_ms(p, n);
  ds_set_open_timeout(30);
  double on_big = open_ms(p, n);
  free(mem);
  printf("watchdog cost per ds_open of valid.h5: %.2f ms without, %.2f ms with (+%.2f ms); holding 512 MiB: "
         "%.2f ms without, %.2f ms with (+%.2f ms)\n",
         off, on, on - off, off_big, on_big, on_big - off_big);
}
