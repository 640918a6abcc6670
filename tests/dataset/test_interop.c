/* Interop: files written by the C writer are read by an outside reader, Debian's h5py,
 * opened as robomimic opens them (tests/dataset/h5_check.py checks every dataset, shape,
 * dtype and attr of the layout, get_dataset_info.py-style). */
#include <criterion/criterion.h>

#include "gen.h"
#include "tt.h"

static const char *py(void) { return getenv("PYTHON") ? getenv("PYTHON") : "/usr/bin/python3"; }

static void write_gen(const char *p, int demos, int px) {
  dsWriterOpts o;
  genOpts g = {.image_px = px, .publish_ratio = 0.125};
  gen_schema(&o, &g);
  dsWriter *w;
  cr_assert_eq(ds_writer_open(p, &o, &w), 0, "%s", tk_errmsg());
  dsEpisodeInfo info = {.task = "gen_task",
                        .operator_name = "interop",
                        .device = "scripted",
                        .control_hz = 20,
                        .model_file = "<mujoco model=\"x\"/>",
                        .ep_meta_json = "{\"lang\": \"pick the cube\"}"};
  for (int i = 0; i < demos; i++) {
    int64_t idx;
    info.seed = i;
    cr_assert_eq(ds_writer_begin(w, &info, &idx), 0);
    cr_assert_eq(gen_record(w, idx, px, i % 3 == 2 ? DS_FAILURE : DS_SUCCESS), 0, "%s", tk_errmsg());
  }
  cr_assert_eq(ds_writer_close(w), 0, "%s", tk_errmsg());
}

Test(interop, h5py_reads_every_field_lowdim) {
  char p[4200];
  snprintf(p, sizeof p, "%s/lowdim.h5", tt_tmpdir());
  write_gen(p, 6, 0);
  char *out = NULL;
  int rc = tt_run(&out, "%s %s %s --native --expect-demos 6", py(), tt_src("tests/dataset/h5_check.py"), p);
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert(strstr(out, "h5_check ok demos=6"), "%s", out);
  free(out);
  /* values, not just shapes: h5py sees what the generator wrote */
  rc = tt_run(
      &out,
      "%s -c \"import h5py, numpy as np; f=h5py.File('%s','r',swmr=True,libver='latest'); d=f['data/demo_4'];"
      "t=np.arange(d.attrs['num_samples'])[:,None]; j=np.arange(7)[None,:];"
      "print(float(np.abs(d['actions'][()]-np.sin(0.37*4+0.05*t+j)).max()), int(d.attrs['success']), "
      "d.attrs['ep_meta'], d.attrs['model_file'])\"",
      py(), p);
  cr_assert_eq(rc, 0, "%s", out);
  double diff = atof(out);
  printf("h5py action max difference %g; %s", diff, out);
  cr_assert_lt(diff, 1e-12);
  cr_assert(strstr(out, " 1 ") && strstr(out, "pick the cube") && strstr(out, "mujoco"), "%s", out);
  free(out);
}

Test(interop, h5py_reads_images_84) {
  char p[4200];
  snprintf(p, sizeof p, "%s/img.h5", tt_tmpdir());
  write_gen(p, 3, 84);
  char *out = NULL;
  int rc = tt_run(&out, "%s %s %s --native --expect-demos 3 --expect-images agentview_image:84:84", py(),
                  tt_src("tests/dataset/h5_check.py"), p);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
}

Test(interop, synth_cli_file_passes) {
  char p[4200];
  snprintf(p, sizeof p, "%s/synth.h5", tt_tmpdir());
  char *out = NULL;
  int rc = tt_run(&out, "%s synth %s --demos 5 --steps 30 --image 32", tt_build("dataset/dataset"), p);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  rc = tt_run(&out, "%s %s %s --native --expect-demos 5 --expect-images agentview_image:32:32", py(),
              tt_src("tests/dataset/h5_check.py"), p);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
}

/* The checker is not a rubber stamp: break one attr with h5py and both it and our
 * validator say so. */
Test(interop, checker_and_validator_catch_damage) {
  char p[4200];
  snprintf(p, sizeof p, "%s/broken.h5", tt_tmpdir());
  write_gen(p, 3, 0);
  char *out = NULL;
  int rc =
      tt_run(&out, "%s -c \"import h5py; f=h5py.File('%s','a'); del f['data/demo_1'].attrs['num_samples']\"",
             py(), p);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  rc = tt_run(&out, "%s %s %s --native", py(), tt_src("tests/dataset/h5_check.py"), p);
  cr_assert_eq(rc, 1, "%s", out);
  cr_assert(strstr(out, "num_samples"), "%s", out);
  free(out);
  rc = tt_run(&out, "%s validate %s", tt_build("dataset/dataset"), p);
  cr_assert_eq(rc, 1, "%s", out);
  cr_assert(strstr(out, "demo_1") && strstr(out, "num_samples"), "%s", out);
  free(out);
}

/* Minari's reader path (tests/dataset/minari_check.py follows MinariStorage.read, deserialize_space and
 * HDF5Storage.get_episodes with h5py, as Minari cannot be installed here) over `convert --to minari` of
 * a writer's file: every episode N+1 observations, N actions, rewards, terminations, truncations, equal
 * to the source; an 84 px camera left out (Minari 0.5.3 reads image spaces only as JPEG) and said so. */
Test(interop, minari_reader_path_opens_the_minari_export) {
  char p[4200], o[4200];
  snprintf(p, sizeof p, "%s/gen.h5", tt_tmpdir());
  snprintf(o, sizeof o, "%s/gen_minari", tt_tmpdir());
  write_gen(p, 4, 84);
  char *out = NULL;
  int rc = tt_run(&out, "%s convert %s --to minari -o %s", tt_build("dataset/dataset"), p, o);
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert(strstr(out, "LEFT OUT: agentview_image"), "%s", out);
  free(out);
  rc = tt_run(&out, "%s %s %s %s --expect-skipped agentview_image", py(),
              tt_src("tests/dataset/minari_check.py"), o, p);
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert(strstr(out, "minari_check ok episodes=4"), "%s", out);
  printf("%s", out);
  free(out);
}
