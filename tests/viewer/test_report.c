/* viewer --report end to end: the page of a real (tiny) run -- demos recorded by teleop's scripted operator,
 * bc-train for a few epochs, bc-eval, a short rl-finetune --compare -- rendered by headless Chromium, which
 * must show every plot (each image decoded at its file's size, and its pixels on the screenshot a plot, not
 * a blank or a broken-image icon); and the page's pieces missing, damaged or carrying markup. */
#include <cairo.h>
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tk.h"
#include "tk_plot.h"
#include "tt.h"
#include "tt_cli.h"

static void fini(void) {
  tt_pool_free();
  tk_plot_cleanup();
}
TestSuite(report, .fini = fini);

static const char *viewer(void) { return tt_build("viewer/viewer"); }

/* the plots the page shows, by their <img> id, and the file each comes from (relative to the run's folder) */
static const char *const FIGS[][2] = {
    {"bc_loss", "policy_loss.png"}, {"bc_success", "policy_success.png"}, {"rl_compare", "ft_compare.png"}};
#define NFIGS 3

/* The width and height in a PNG file's IHDR. */
static void png_size(const char *path, int *w, int *h) {
  png_ok(path);
  const unsigned char *u = (const unsigned char *)slurp(path, NULL);
  *w = u[16] << 24 | u[17] << 16 | u[18] << 8 | u[19];
  *h = u[20] << 24 | u[21] << 16 | u[22] << 8 | u[23];
}

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  cr_assert(f, "cannot write %s", path);
  fputs(text, f);
  fclose(f);
}

static void run_ok(const char *dir, const char *what, const char *fmt, const char *a, const char *b) {
  char *out, *err;
  int rc = run2(dir, &out, &err, fmt, a, b);
  cr_assert_eq(rc, 0, "%s -> exit %d\nstdout: %s\nstderr: %s", what, rc, out, err);
}

/* A tiny run in dir, as scripts/demo.sh makes it: demos.h5, policy.h5 (+ .csv, _loss.png, _success.png),
 * bc_eval.json, ft.h5 (+ _compare.csv, _compare.png), ft_eval.json. */
static void make_run(const char *dir) {
  char demos[4200], pol[4200], cmd[8192];
  snprintf(demos, sizeof demos, "%s/demos.h5", dir);
  snprintf(pol, sizeof pol, "%s/policy.h5", dir);
  tt_record(demos, "lift", 4, 0.1, 0, "--camera agentview:32x32");
  run_ok(dir, "dataset split", "%s split %s --valid 0.25 --seed 0 --in-place", tt_build("dataset/dataset"),
         demos);
  snprintf(cmd, sizeof cmd,
           "%%s %%s -o %s --hidden 32,32 --epochs 4 --eval-every 2 --eval-episodes 2 --seed 1 --quiet", pol);
  run_ok(dir, "bc-train", cmd, tt_build("bc/bc-train"), demos);
  snprintf(cmd, sizeof cmd, "(%%s %%s --episodes 3 --json --quiet > %s/bc_eval.json)", dir);
  run_ok(dir, "bc-eval", cmd, tt_build("bc/bc-eval"), pol);
  snprintf(cmd, sizeof cmd,
           "%%s --policy %%s --demos %s --out %s/ft.h5 --hidden 32 --batch 32 --steps 200 --eval-every 100 "
           "--eval-episodes 2 --critic-warmup 20 --workers 1 --actor-delay 50 --compare --quiet",
           demos, dir);
  run_ok(dir, "rl-finetune --compare", cmd, tt_build("rl_finetune/rl-finetune"), pol);
  char ft[4200];
  snprintf(ft, sizeof ft, "%s/ft.h5", dir);
  snprintf(cmd, sizeof cmd, "(%%s %%s --episodes 2 --seed 1000000005 --json --quiet > %s/ft_eval.json)", dir);
  run_ok(dir, "bc-eval of the fine-tuned policy", cmd, tt_build("bc/bc-eval"), ft);
}

/* ---- what Chromium shows ------------------------------------------------------------------------- */
typedef struct {
  char id[32];
  int complete, nat_w, nat_h, x, y, w, h;
} shown;

/* Where the probe (a script a copy of the page gets) wrote, once the page had loaded, what each <img>
 * decoded to and where it sits; returns the number of images. */
static int read_probe(const char *dom, shown *s, int max, int *page_h) {
  const char *p = strstr(dom, "<pre id=\"probe\"");
  cr_assert(p, "the probe ran (Chromium's DOM has its <pre>): %.300s", dom);
  p = strchr(p, '>') + 1;
  int n = 0;
  *page_h = -1;
  while (*p && *p != '<') {
    if (!strncmp(p, "height ", 7)) {
      *page_h = atoi(p + 7);
    } else if (n < max) {
      shown *q = &s[n];
      int k = sscanf(p, "%31s %d %d %d %d %d %d %d", q->id, &q->complete, &q->nat_w, &q->nat_h, &q->x, &q->y,
                     &q->w, &q->h);
      cr_assert_eq(k, 8, "a probe entry: %.80s", p);
      n++;
    }
    const char *semi = strchr(p, ';');
    if (!semi) break;
    p = semi + 1;
  }
  return n;
}

typedef struct {
  int w, h, stride;
  uint8_t *data;
  cairo_surface_t *s;
} img;

static uint32_t px(const img *im, int x, int y) {
  return ((const uint32_t *)(im->data + (size_t)y * im->stride))[x] & 0xffffff;
}

static int near(uint32_t a, uint32_t b) {
  for (int sh = 0; sh < 24; sh += 8) {
    int d = (int)(a >> sh & 255) - (int)(b >> sh & 255);
    if (d < -8 || d > 8) return 0;
  }
  return 1;
}

/* Does the screenshot show a plot inside the rectangle: many colours (text, axes, lines; not a fill or
 * an icon), a white background with drawing on it, and the plots' line colours (the first two series). why
 * gets the numbers either way. */
static int plot_shown(const img *im, const shown *s, char *why, size_t n) {
  int x0 = s->x + 2, y0 = s->y + 2, x1 = s->x + s->w - 2, y1 = s->y + s->h - 2;
  if (s->w < 100 || s->h < 100 || x0 < 0 || y0 < 0 || x1 > im->w || y1 > im->h) {
    snprintf(why, n, "%s: a %dx%d box at %d,%d (not a plot inside the %dx%d screenshot)", s->id, s->w, s->h,
             s->x, s->y, im->w, im->h);
    return 0;
  }
  uint32_t seen[64];
  int ncol = 0, ink = 0, line = 0, total = 0;
  for (int y = y0; y < y1; y++)
    for (int x = x0; x < x1; x++) {
      uint32_t c = px(im, x, y);
      total++;
      ink += c != 0xffffff;
      line += near(c, tk_plot_color(0)) || near(c, tk_plot_color(1));
      int k = 0;
      while (k < ncol && seen[k] != c)
        k++;
      if (k == ncol && ncol < 64) seen[ncol++] = c;
    }
  snprintf(why, n, "%s: %d colours, %d of %d pixels drawn, %d in the line colours", s->id, ncol, ink, total,
           line);
  return ncol >= 20 && ink > total / 100 && ink < total / 2 && line >= 100;
}

/* Render page (a copy with the probe) in headless Chromium; fill s[NFIGS] in FIGS order and return how
 * many of the plots were decoded at their file's size and show on the screenshot. msg: what failed. */
static int plots_shown(const char *dir, const char *page, const char *tag, char *msg, size_t n) {
  char *html = slurp(page, NULL);
  cr_assert(html, "%s", page);
  char *end = strstr(html, "</body>");
  cr_assert(end, "%s has a </body>", page);
  char probe[4200], shot[4200], dom[4200], prof[4200];
  snprintf(probe, sizeof probe, "%s/%s_probe.html", dir, tag);
  snprintf(shot, sizeof shot, "%s/%s_shot.png", dir, tag);
  snprintf(dom, sizeof dom, "%s/%s_dom.html", dir, tag);
  snprintf(prof, sizeof prof, "%s/%s_chromium", dir, tag);
  FILE *f = fopen(probe, "w");
  cr_assert(f);
  fwrite(html, 1, (size_t)(end - html), f);
  fputs("<script>window.addEventListener('load', function () {\n"
        "  var r = [];\n"
        "  document.querySelectorAll('img').forEach(function (i) {\n"
        "    var b = i.getBoundingClientRect();\n"
        "    r.push([i.id, i.complete ? 1 : 0, i.naturalWidth, i.naturalHeight, Math.round(b.left),\n"
        "            Math.round(b.top), Math.round(b.width), Math.round(b.height)].join(' '));\n"
        "  });\n"
        "  r.push('height ' + document.documentElement.scrollHeight);\n"
        "  var p = document.createElement('pre');\n"
        "  p.id = 'probe';\n"
        "  p.style.display = 'none';\n"
        "  p.textContent = r.join(';');\n"
        "  document.body.appendChild(p);\n"
        "});</script>\n",
        f);
  fputs(end, f);
  fclose(f);
  /* as root: no sandbox; no GPU here; a timeout so it can never hang the suite; its profile (and what it
   * puts under HOME) in the test's folder, removed after */
  int rc =
      tt_run(NULL,
             "HOME=%s timeout -k 5 60 chromium --headless --no-sandbox --disable-gpu --hide-scrollbars "
             "--user-data-dir=%s --window-size=1700,2600 --screenshot=%s --dump-dom file://%s >%s 2>%s.err",
             prof, prof, shot, probe, dom, dom);
  tt_run(NULL, "rm -rf %s", prof);
  cr_assert_eq(rc, 0, "chromium -> exit %d (see %s.err)", rc, dom);
  shown s[8];
  int page_h, ns = read_probe(slurp(dom, NULL), s, 8, &page_h);
  cr_assert_eq(ns, NFIGS, "the page has %d images, want %d", ns, NFIGS);
  cr_assert(page_h > 500 && page_h <= 2600, "the page (%d px high) fits the 2600 px screenshot", page_h);
  img im;
  im.s = cairo_image_surface_create_from_png(shot);
  cr_assert_eq(cairo_surface_status(im.s), CAIRO_STATUS_SUCCESS, "%s is not a PNG", shot);
  im.w = cairo_image_surface_get_width(im.s);
  im.h = cairo_image_surface_get_height(im.s);
  im.stride = cairo_image_surface_get_stride(im.s);
  im.data = cairo_image_surface_get_data(im.s);
  cr_assert_eq(im.w, 1700, "the screenshot is the window's size");
  int good = 0;
  size_t at = 0;
  msg[0] = 0;
  for (int k = 0; k < NFIGS; k++) {
    char src[4200], why[256];
    snprintf(src, sizeof src, "%s/%s", dir, FIGS[k][1]);
    int w, h;
    png_size(src, &w, &h);
    int i = 0;
    while (i < ns && strcmp(s[i].id, FIGS[k][0]))
      i++;
    cr_assert_lt(i, ns, "the page has <img id=%s>", FIGS[k][0]);
    int decoded = s[i].complete && s[i].nat_w == w && s[i].nat_h == h;
    int on_screen = plot_shown(&im, &s[i], why, sizeof why);
    printf("%s: %s decoded %dx%d (file %dx%d); %s\n", tag, FIGS[k][0], s[i].nat_w, s[i].nat_h, w, h, why);
    if (decoded && on_screen)
      good++;
    else if (at < n)
      at += (size_t)snprintf(msg + at, n - at, "%s%s%s", at ? "; " : "", decoded ? "" : "not decoded: ", why);
  }
  cairo_surface_destroy(im.s);
  return good;
}

Test(report, a_run_in_chromium, .timeout = 240) {
  cr_assert_eq(tt_run(NULL, "command -v chromium >/dev/null"), 0,
               "chromium is not installed (scripts/setup.sh installs it)");
  const char *dir = keep(strdup(tt_tmpdir()));
  make_run(dir);
  char *out, *err;
  int rc = run2(dir, &out, &err, "%s --report %s", viewer(), dir);
  cr_assert_eq(rc, 0, "viewer --report -> exit %d\nstdout: %s\nstderr: %s", rc, out, err);
  char page[4200];
  snprintf(page, sizeof page, "%s/report.html", dir);
  cr_assert(strstr(out, page) && !strstr(out, "not found"), "says where the page is, nothing missing: %s",
            out);
  char *html = slurp(page, NULL);
  cr_assert(html);
  /* the numbers come from the files: bc-eval's, the dataset's, rl-finetune's */
  char evp[4200];
  snprintf(evp, sizeof evp, "%s/bc_eval.json", dir);
  char *ej = slurp(evp, NULL);
  cr_assert(ej && strstr(ej, "\"episodes\":3"), "%s", ej);
  cr_assert(strstr(html, "held-out episodes, seeds 1000000000..1000000002"), "bc-eval's episodes and seeds");
  cr_assert(!strstr(html, "It evaluated"), "bc-eval evaluated this policy");
  cr_assert(strstr(html, "<th>demos</th><td><b>4</b>"), "the dataset's demos");
  cr_assert(strstr(html, "agentview_image</code> 32x32"), "the camera");
  cr_assert(strstr(html, "train 3, valid 1"), "the masks");
  cr_assert(strstr(html, "epoch <b>") && strstr(html, "of 4"), "the epoch bc-train chose");
  cr_assert(strstr(html, "id=\"compare\">compare: "), "the compare line");
  cr_assert(strstr(html, "fine-tuned policy, bc-eval: <b>") &&
                strstr(html, "of 2 held-out episodes, seeds 1000000005..1000000006"),
            "the fine-tuned policy's bc-eval");
  cr_assert(strstr(html, "What the numbers are"), "the legend");
  /* self-contained: nothing loaded from anywhere else */
  cr_assert(!strstr(html, "src=\"http") && !strstr(html, "<link") && !strstr(html, "<script") &&
                !strstr(html, "url("),
            "the page refers to nothing outside itself");
  char msg[2048];
  int good = plots_shown(dir, page, "page", msg, sizeof msg);
  cr_assert_eq(good, NFIGS, "every plot shows: %s", msg);
  /* the check can fail: the same page with one image's data damaged shows the other two only */
  char *broken = keep(strdup(html)), *p = broken;
  for (int k = 0; k < NFIGS; k++)
    p = strstr(p, "base64,") + 7;
  memset(p, 'A', 200); /* the last image (rl_compare): its PNG signature and header gone */
  char bpage[4200];
  snprintf(bpage, sizeof bpage, "%s/broken.html", dir);
  write_file(bpage, broken);
  good = plots_shown(dir, bpage, "broken", msg, sizeof msg);
  cr_assert_eq(good, NFIGS - 1, "a damaged image is caught: %s", msg);
  cr_assert(strstr(msg, "rl_compare"), "and named: %s", msg);
}

/* ---- missing, damaged, markup -------------------------------------------------------------------- */
/* viewer --report that must fail (run in dir: args name its files): exit 1, one line naming want, the page
 * left as it was, no temp file. */
static void refused(const char *dir, const char *args, const char *want) {
  char page[4200];
  snprintf(page, sizeof page, "%s/report.html", dir);
  write_file(page, "the page before\n");
  char *out, *err;
  int rc = run2(dir, &out, &err, "cd %s && %s --report . %s", dir, viewer(), args);
  cr_assert_eq(rc, 1, "%s: exit %d, want 1\nstdout: %s\nstderr: %s", args, rc, out, err);
  cr_assert_eq(count_lines(err), 1, "one line: %s", err);
  cr_assert(strstr(err, want), "names %s: %s", want, err);
  cr_assert_str_eq(slurp(page, NULL), "the page before\n", "the page is untouched");
  DIR *d = opendir(dir);
  for (struct dirent *e; (e = readdir(d));)
    cr_assert(!strstr(e->d_name, ".tmp"), "a temp file left: %s", e->d_name);
  closedir(d);
}

Test(report, missing_damaged_and_markup, .timeout = 60) {
  const char *dir = keep(strdup(tt_tmpdir()));
  char *out, *err, path[4200];
  /* an empty folder: a page that says what is missing */
  int rc = run2(dir, &out, &err, "%s --report %s", viewer(), dir);
  cr_assert_eq(rc, 0, "stdout: %s\nstderr: %s", out, err);
  cr_assert(strstr(out, "7 pieces not found"), "%s", out);
  snprintf(path, sizeof path, "%s/report.html", dir);
  char *html = slurp(path, NULL);
  cr_assert(html && strstr(html, "</html>"));
  static const char *const lines[] = {"No dataset: <code>",      "No bc-eval result: <code>",
                                      "No policy: <code>",       "No training log: <code>",
                                      "No loss curve: <code>",   "No success curve: <code>",
                                      "No fine-tune run: <code>"};
  for (int i = 0; i < (int)TK_ARRAY_LEN(lines); i++)
    cr_assert(strstr(html, lines[i]), "says '%s': %s", lines[i], html);
  cr_assert(!strstr(html, "<img"), "no images");
  /* through a symbolic link the page it names is replaced, and the link stays */
  rc = tt_run(NULL, "cd %s && mv report.html real.html && ln -s real.html report.html", dir);
  cr_assert_eq(rc, 0);
  rc = run2(dir, &out, &err, "%s --report %s", viewer(), dir);
  cr_assert_eq(rc, 0, "stdout: %s\nstderr: %s", out, err);
  cr_assert_eq(tt_run(NULL, "test -L %s/report.html && test -f %s/real.html", dir, dir), 0,
               "the link stays a link");
  tt_run(NULL, "rm %s/report.html %s/real.html", dir, dir);
  /* a dataset (synthetic: quick) and an evaluation; the other pieces still missing */
  snprintf(path, sizeof path, "%s/demos.h5", dir);
  run_ok(dir, "dataset synth", "%s synth %s --demos 3 --steps 12", tt_build("dataset/dataset"), path);
  snprintf(path, sizeof path, "%s/bc_eval.json", dir);
  write_file(path, "{\"policy\":\"elsewhere.h5\",\"task\":\"<i>x</i>&\",\"episodes\":10,\"successes\":7,"
                   "\"success_rate\":0.7,\"mean_length\":42.5,\"seed\":1000000000}\n");
  /* rl-finetune's comparison: reached at 100 fine-tuned, 300 from scratch; a run whose name is markup */
  snprintf(path, sizeof path, "%s/ft_compare.csv", dir);
  write_file(path,
             "run,env_steps,success_rate,mean_return,updates,seconds,alpha\n"
             "finetune,0,0.5,1,0,0.1,0.001\nfinetune,100,0.96,1,100,0.2,0.001\n"
             "scratch,0,0,0,0,0.1,0.001\nscratch,100,0.2,0,100,0.2,0.001\nscratch,200,0.9,0,200,0.3,0.001\n"
             "scratch,300,1,0,300,0.4,0.001\n<script>alert(1)</script>,0,0,0,0,0,0\n");
  rc = run2(dir, &out, &err, "%s --report %s", viewer(), dir);
  cr_assert_eq(rc, 0, "stdout: %s\nstderr: %s", out, err);
  snprintf(path, sizeof path, "%s/report.html", dir);
  html = slurp(path, NULL);
  cr_assert(strstr(html, "<th>demos</th><td><b>3</b>") && strstr(html, "synth_reach"), "the dataset");
  cr_assert(strstr(html, "<b>70%</b> success (7 of 10 held-out episodes"), "bc-eval's numbers");
  cr_assert(strstr(html, "mean length <b>42.5</b>"), "bc-eval's mean length");
  cr_assert(strstr(html, "after 100 env steps fine-tuned, 300 from scratch: 3.0x fewer samples"),
            "the compare line: %s", strstr(html, "compare:"));
  cr_assert(strstr(html, "&lt;script&gt;alert(1)&lt;/script&gt;") && !strstr(html, "<script>"),
            "a run name is escaped");
  cr_assert(strstr(html, "&lt;i&gt;x&lt;/i&gt;&amp;") && !strstr(html, "<i>x</i>"), "a task name is escaped");
  cr_assert(strstr(html, "No comparison plot: <code>"), "the plot is missing");
  /* the target: rl-finetune's --target; at 0.99 only scratch arrives */
  rc = run2(dir, &out, &err, "%s --report %s --target 0.99", viewer(), dir);
  cr_assert_eq(rc, 0, "stdout: %s\nstderr: %s", out, err);
  html = slurp(path, NULL);
  cr_assert(
      strstr(html, "scratch reached 99% after 300 env steps; the fine-tune did not within 100 (best 96%)"),
      "%s", strstr(html, "compare:"));
  /* damaged pieces: one line naming the file, exit 1, the page untouched */
  char bad[4200];
  snprintf(bad, sizeof bad, "%s/bad.json", dir);
  write_file(bad, "{\"episodes\": 3,");
  refused(dir, "--bc-eval bad.json", "bad.json: not valid JSON");
  write_file(bad, "{\"episodes\": 3}");
  refused(dir, "--bc-eval bad.json", "bad.json: no number \"successes\"");
  snprintf(bad, sizeof bad, "%s/bad_compare.csv", dir);
  write_file(bad, "run,env_steps,success_rate\nfinetune,0,0.5\nscratch,zero,0\n");
  refused(dir, "--ft bad.h5", "bad_compare.csv: row 3: \"zero\" is not a number");
  write_file(bad, "step,success\n0,0.5\n");
  refused(dir, "--ft bad.h5", "bad_compare.csv: no \"run\" column");
  write_file(bad, "run,env_steps,success_rate\nfinetune,0\n");
  refused(dir, "--ft bad.h5", "bad_compare.csv: row 2 has 2 fields");
  /* a damaged plot: a real PNG cut short */
  snprintf(path, sizeof path, "%s/good_compare.csv", dir);
  write_file(path, "run,env_steps,success_rate\nfinetune,0,0.5\n");
  snprintf(path, sizeof path, "%s/good_compare.png", dir);
  double xs[3] = {0, 1, 2}, ys[3] = {0, 1, 0};
  tkSeries s = {"s", xs, ys, 3};
  cr_assert_eq(tk_plot_png(path, NULL, &s, 1), 0, "%s", tk_errmsg());
  tt_run(NULL, "cd %s && head -c 2000 good_compare.png > cut.png && mv cut.png good_compare.png", dir);
  refused(dir, "--ft good.h5", "good_compare.png: a damaged PNG image");
  write_file(path, "not a png\n");
  refused(dir, "--ft good.h5", "good_compare.png: not a PNG image");
  snprintf(bad, sizeof bad, "%s/bad.h5", dir);
  write_file(bad, "not hdf5 at all\n");
  refused(dir, "--demos bad.h5", "bad.h5");
  refused(dir, "--bc bad.h5", "bad.h5");
  /* the output rule: never over an input; the folder must exist; report options need --report */
  refused(dir, "--out bc_eval.json", "bc_eval.json");
  rc = run2(dir, &out, &err, "%s --report %s/nope", viewer(), dir);
  cr_assert(rc == 1 && strstr(err, "nope: no such directory"), "exit %d: %s", rc, err);
  rc = run2(dir, &out, &err, "%s --bc-eval x.json", viewer());
  cr_assert_eq(rc, 2, "%s", err);
  rc = run2(dir, &out, &err, "%s --report %s --target 0", viewer(), dir);
  cr_assert_eq(rc, 2, "%s", err);
}
