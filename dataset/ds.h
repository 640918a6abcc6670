/* dataset/ds.h -- demonstration datasets in robomimic's HDF5 layout (prefix ds_).
 *
 * Layout (readable by robomimic and plain h5py):
 *   data                      attrs: total (int64), env_args (JSON str), demokit_format, demokit_version
 *   data/demo_<i>             attrs: num_samples, success, task, seed, operator, device, control_hz,
 *                                    missed_deadlines, model_file (optional), ep_meta (optional JSON)
 *     actions    (N,A) float64      rewards (N,) float64     dones (N,) uint8
 *     states     (N,S) float64      timestamps (N,) float64 (seconds, measured)
 *     interventions (N,) uint8      obs/<key> (N,...)        next_obs/<key> (N,...)
 *   mask/<name>               1-D fixed-length strings naming demos (train/valid/...)
 *
 * Crash safety: every episode streams into its own file in <path>.staging/ and is committed
 * by close + fsync + rename there. Committed episodes are merged ("published") into <path>
 * by copy + append + fsync + rename, so <path> is always a complete file. A crash loses at
 * most the open episode; ds_recover() (run by ds_writer_open too) publishes what a crash left.
 */
#ifndef DS_H
#define DS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DS_FORMAT_NAME "demokit.dataset"
#define DS_FORMAT_VERSION 1
#define DS_MAX_KEYS 32 /* observation keys per dataset */
#define DS_NAME_MAX 64 /* key, task, device names */
#define DS_MAX_RANK 3  /* per-step rank of an observation (image: H,W,C) */

typedef enum { DS_F32 = 0, DS_F64 = 1, DS_U8 = 2 } dsDtype;
size_t ds_dtype_size(dsDtype t);
const char *ds_dtype_name(dsDtype t);

typedef struct {
  char name[DS_NAME_MAX];     /* robomimic name, e.g. robot0_eef_pos, agentview_image */
  dsDtype dtype;              /* storage and input type */
  int rank;                   /* per-step rank, 1..3 */
  int64_t shape[DS_MAX_RANK]; /* per-step shape */
} dsKeySpec;

typedef struct {
  int action_dim; /* A */
  int state_dim;  /* S, 0 = no states stored */
  int nkeys;
  dsKeySpec keys[DS_MAX_KEYS];
} dsSchema;

int64_t ds_key_elems(const dsKeySpec *k); /* elements per step */
int ds_key_is_image(const dsKeySpec *k);  /* uint8 rank-3 */
/* Add a key; returns its index or a negative error. */
int ds_schema_add(dsSchema *s, const char *name, dsDtype t, int rank, const int64_t *shape);
int ds_schema_find(const dsSchema *s, const char *name); /* index or -1 */
/* 0 if equal; otherwise TK_EFORMAT with a message describing the first difference. */
int ds_schema_compare(const dsSchema *a, const dsSchema *b);

/* ---- writer ----------------------------------------------------------------- */
typedef enum { DS_SUCCESS = 0, DS_FAILURE = 1, DS_DISCARD = 2 } dsOutcome;

typedef struct dsWriter dsWriter;

typedef struct {
  dsSchema schema;
  const char *env_name;        /* task name, stored in env_args.env_name */
  int env_type;                /* robomimic env type in env_args.type (default 4: demokit) */
  const char *env_kwargs_json; /* JSON object for env_args.env_kwargs (default "{}") */
  int store_next_obs;          /* default 1 */
  int image_gzip;              /* gzip level for uint8 image keys, 0..9 (default 4) */
  int lowdim_gzip;             /* gzip level for everything else, 0..9 (default 0) */
  int block_steps;             /* steps handed to the writer thread at once (default 64) */
  /* Publishing (merging committed episodes into the main file by copy + append + rename):
   * after a commit, when staged bytes >= publish_ratio * main file bytes (so the copying
   * stays linear in the data: default 1.0), or when publish_interval_s seconds have passed
   * since the last publish (default 30: slow, human-paced sessions see their episodes in
   * the main file soon). publish_ratio 0 = after every episode; < 0 = only at close and
   * ds_writer_publish. */
  double publish_ratio;
  double publish_interval_s;
  /* Called on the writer thread once an episode is durable (committed). */
  void (*on_commit)(int64_t demo_index, dsOutcome outcome, int64_t num_samples, void *user);
  void *user;
} dsWriterOpts;

typedef struct {
  const char *task;          /* attr task */
  int64_t seed;              /* attr seed */
  const char *operator_name; /* attr operator */
  const char *device;        /* attr device (gamepad, keyboard, spacemouse, scripted, ...) */
  double control_hz;         /* attr control_hz (nominal) */
  const char *model_file;    /* attr model_file: MJCF XML text, optional */
  const char *ep_meta_json;  /* attr ep_meta, optional */
} dsEpisodeInfo;

typedef struct {
  const void *obs[DS_MAX_KEYS]; /* one step of each key, in the key's dtype */
  const double *action;         /* A */
  double reward;
  int done;
  const double *state; /* S (NULL if state_dim is 0) */
  double timestamp;    /* seconds, measured */
  int intervention;    /* 1 where a human took over from a policy */
} dsStep;

void ds_writer_default(dsWriterOpts *o);
/* Create path, or append to it if it exists (schema and env must match). Runs ds_recover
 * first when a previous session left staged episodes. Takes an exclusive lock. */
int ds_writer_open(const char *path, const dsWriterOpts *o, dsWriter **out);
/* Starts an episode; *demo_index gets the index it will have (demo_<i>). */
int ds_writer_begin(dsWriter *w, const dsEpisodeInfo *info, int64_t *demo_index);
/* Copies the step; never waits for the disk. */
int ds_writer_add_step(dsWriter *w, const dsStep *step);
/* Ends the episode. final_obs (may be NULL: repeats the last obs) is next_obs of the last
 * step. Returns at once; the episode is durable when ds_writer_committed() counts it. */
int ds_writer_end(dsWriter *w, dsOutcome outcome, const void *const *final_obs, int64_t missed_deadlines);
/* The same, storing why (attr end_reason: "operator", "maximum length", "robot fault: ..."). */
int ds_writer_end_why(dsWriter *w, dsOutcome outcome, const void *const *final_obs, int64_t missed_deadlines,
                      const char *why);
int64_t ds_writer_committed(dsWriter *w); /* episodes committed (durable) so far */
int ds_writer_sync(dsWriter *w);          /* wait until every ended episode is committed */
int ds_writer_publish(dsWriter *w);       /* sync, then merge staged episodes into the file */
const char *ds_writer_path(const dsWriter *w);
int64_t ds_writer_next_index(const dsWriter *w);
/* Sync, publish, stop the thread, free. Returns the first error seen. NULL is fine. */
int ds_writer_close(dsWriter *w);

/* Publish what a crash left in <path>.staging (drops unfinished episodes). Every committed episode
 * is validated and compared with the dataset first (task, env_args, schema, control rate); one that
 * does not belong is never deleted: it is moved to <path>.rejected/ with a warning naming why, and
 * counted in *rejected. A staged demo_<i> that clashes with another episode of that name in the file
 * is published under the next free index. *published, *dropped (unfinished episodes removed) and
 * *rejected are optional. */
int ds_recover(const char *path, int *published, int *dropped, int *rejected);
/* Number of committed episodes waiting in <path>.staging (0 if none). */
int ds_staged_count(const char *path);

/* ---- reader ----------------------------------------------------------------- */
typedef struct dsFile dsFile;

typedef struct {
  char name[32]; /* demo_<index> */
  int64_t index;
  int64_t num_samples;
  int success; /* 1, 0, or -1 when the file does not say */
  char task[DS_NAME_MAX];
  char operator_name[DS_NAME_MAX];
  char device[DS_NAME_MAX];
  int64_t seed;             /* -1 when absent */
  double control_hz;        /* 0 when absent */
  int64_t missed_deadlines; /* -1 when absent */
  int has_states, has_timestamps, has_interventions, has_next_obs, has_rewards, has_dones;
} dsDemoInfo;

typedef struct {
  int64_t num_samples;
  double *actions;             /* N x A */
  double *rewards;             /* N (zeros if absent) */
  uint8_t *dones;              /* N (zeros if absent) */
  double *states;              /* N x S or NULL */
  double *timestamps;          /* N or NULL */
  uint8_t *interventions;      /* N or NULL */
  void *obs[DS_MAX_KEYS];      /* N x key elems, in the schema's dtype */
  void *next_obs[DS_MAX_KEYS]; /* same, or NULL */
} dsEpisode;

enum {
  DS_OPEN_NO_VALUE_CHECK = 1, /* skip the NaN/Inf scan of float data on open */
};

/* Open read-only and validate; on failure the message names file, demo and dataset. */
int ds_open(const char *path, int flags, dsFile **out);
void ds_close(dsFile *f);
const char *ds_path(const dsFile *f);
int ds_num_demos(const dsFile *f);
const dsDemoInfo *ds_demo(const dsFile *f, int i);   /* sorted by index */
int ds_find_demo(const dsFile *f, const char *name); /* position or -1 */
const dsSchema *ds_schema(const dsFile *f);
const char *ds_env_name(const dsFile *f);
const char *ds_env_args(const dsFile *f); /* the JSON text */
int64_t ds_total_samples(const dsFile *f);
int ds_is_native(const dsFile *f); /* written by this toolkit */
/* Demo lengths and outcomes: the shortest and longest demo (0 and 0 without demos), how many say
 * whether they succeeded (success attribute 0 or 1) and how many succeeded. */
typedef struct {
  int64_t min_len, max_len;
  int known, successes;
} dsDemoStats;
void ds_demo_stats(const dsFile *f, dsDemoStats *st);
int ds_num_masks(const dsFile *f);
const char *ds_mask_name(const dsFile *f, int m);
/* Demo positions named by a mask (malloc'd). */
int ds_mask(const dsFile *f, const char *name, int **pos, int *n);

int ds_read_episode(dsFile *f, int i, dsEpisode *out);
/* Read one per-step dataset of demo i ("actions", "timestamps", "obs/<key>", ...) as float64
 * into out (num_samples x columns); *cols (optional) gets the columns. */
int ds_read_column(dsFile *f, int i, const char *dataset, double *out, int64_t capacity, int64_t *cols);
/* Read rows [start, start + count) of one per-step dataset of demo i as type t (DS_F64, DS_F32 or
 * DS_U8; HDF5 converts from the stored type) into out, which holds capacity values; *cols (optional)
 * gets the values per row. Reads only those rows (one frame of a long episode, not all of it); the
 * dataset stays open in f until another is read, so stepping through it inflates each chunk once. */
int ds_read_rows(dsFile *f, int i, const char *dataset, int64_t start, int64_t count, dsDtype t, void *out,
                 int64_t capacity, int64_t *cols);
void ds_episode_free(dsEpisode *e);

/* Loading for training: chosen obs keys (low-dim) concatenated into float32 rows. */
typedef struct {
  const char *const *obs_keys; /* NULL = every non-image key, sorted by name */
  int nobs_keys;
  const char *filter_key; /* mask name, NULL = all demos */
  int load_next_obs;      /* also fill next_obs */
} dsLoadOpts;

typedef struct {
  int64_t n; /* samples */
  int obs_dim, act_dim;
  int ndemos;
  float *obs;          /* n x obs_dim */
  float *next_obs;     /* n x obs_dim or NULL */
  float *actions;      /* n x act_dim */
  float *rewards;      /* n */
  uint8_t *dones;      /* n */
  int64_t *demo_start; /* ndemos + 1 offsets into the rows */
  int *demo_pos;       /* ndemos: position of each demo in the file */
  int nkeys;
  char (*key_names)[DS_NAME_MAX]; /* nkeys names in column order */
  int *key_offset;                /* nkeys + 1 column offsets */
  void *block_;                   /* the single allocation behind the arrays */
} dsLoaded;

int ds_load(dsFile *f, const dsLoadOpts *o, dsLoaded *out);
void ds_loaded_free(dsLoaded *l);

/* Some damage sends libhdf5 1.10 into an endless loop (a corrupted global heap behind a
 * variable-length string, for one), and nothing gets a thread back from inside HDF5. With a
 * timeout > 0 (for the whole process; default 0: off), ds_open and ds_validate check the file in a
 * child process (fork) that reports back through a pipe, each open with its own child and progress
 * counter: when the check makes no progress for that many seconds the child is killed and the call
 * returns TK_ETIMEOUT, its message naming the file and the object being read. A crash of the HDF5
 * library on a damaged file becomes an error the same way. The calling process never ends and its HDF5
 * state is untouched. Cost: a fork and a second open of the checked file per call (measured: about
 * 2.5 ms per ds_open of a small file on a loaded 2-core machine, not growing with the host's memory).
 * The command-line programs set it from DK_OPEN_TIMEOUT (default 30 s) and exit 1 with the message. */
void ds_set_open_timeout(double seconds);

/* ---- validation ------------------------------------------------------------- */
/* Check everything and call report() once per problem (one line each). Returns the number
 * of problems (0 = valid) or a negative error when the file could not be examined at all. */
int ds_validate(const char *path, void (*report)(const char *line, void *user), void *user);

/* ---- editing (every command writes a temp file beside its destination and renames it; inputs are
 * untouched unless out is NULL, which means "replace the input", still through temp + rename) ----
 * out: the output (NULL: edit the input in place; through a symbolic link the file it names is edited
 * and the link stays). An output goes through the output rule (ds_output_check): it is never one of the
 * inputs, and an existing dataset or a file of another kind is replaced only with force.
 * An edit that would leave no demos (or an empty mask) is refused and writes nothing. */
/* Merge datasets into out, renumbering demos 0.. in input order; masks are carried over
 * (renamed demos). Refuses inputs whose episodes do not belong together (ds_compat.c: task,
 * env_args, schema, control rate), naming both files and the difference. */
int ds_merge(const char *const *inputs, int n, const char *out, int force);
/* Write mask/train and mask/valid (valid_frac of the demos, at least one of each; refused below
 * two demos), chosen with seed. */
int ds_split(const char *path, double valid_frac, uint64_t seed, const char *out, int force);
typedef struct {
  int success_only;         /* keep demos with success == 1; refused when a demo does not say (-1) */
  int64_t min_len, max_len; /* keep num_samples in [min_len, max_len]; max_len <= 0: no bound */
  const char *mask_name;    /* non-NULL: write mask/<name> listing the kept demos instead of copying */
} dsFilterOpts;
int ds_filter(const char *path, const dsFilterOpts *o, const char *out, int force, int *kept);
/* Remove the named demos (names as demo_<i>, each once; not all of them). */
int ds_delete(const char *path, const char *const *demos, int n, const char *out, int force);
/* Keep steps [start, end) of one demo (end <= 0: to the end). */
int ds_trim(const char *path, const char *demo, int64_t start, int64_t end, const char *out, int force);

/* ---- the output rule (dataset/ds_output.c): every file any tool writes goes through it ----
 * An output is never one of the command's inputs (the same file by device and inode: symlinks, hard
 * links and ".." included). An existing output is replaced only when it is of the kind written and
 * that kind is not a dataset (a policy over a policy, a PNG over a PNG); a dataset, or a file of
 * another kind (a dataset under a policy's or a PNG's name), only with force (the tools' --force).
 * Kinds are read from the content, not the name. */
typedef enum {
  DS_KIND_NONE = 0, /* no such file */
  DS_KIND_EMPTY,    /* a file of 0 bytes */
  DS_KIND_DIR,
  DS_KIND_DATASET, /* HDF5 with a /data group (robomimic layout) */
  DS_KIND_HDF5,    /* any other HDF5 file: policies, checkpoints */
  DS_KIND_PNG,
  DS_KIND_TEXT,  /* CSV, JSON, HTML */
  DS_KIND_INPUT, /* teleop's raw input recordings (--record-input) */
  DS_KIND_OTHER  /* binary of unknown kind, or an HDF5 file that cannot be opened */
} dsKind;
dsKind ds_file_kind(const char *path);
const char *ds_kind_name(dsKind k);
int ds_same_file(const char *a, const char *b); /* both exist and are one file */
/* 0 when out may be written as a `writes` file; else TK_EINVAL with a message naming out. */
int ds_output_check(const char *out, dsKind writes, const char *const *inputs, int ninputs, int force);

/* ---- export to other layouts (`dataset convert`; dataset/ds_export.c) ----
 * Every format is one row of one table (ds_export_format); adding one is a file plus a row. The output
 * appears whole or not at all: it is built in a temp file or directory beside out, fsynced and renamed.
 * out goes through the output rule with the row's kind. A directory output (minari) never replaces a
 * directory without force, and even with force only an empty one or one holding the row's dir_marker
 * (a directory of another kind is never removed). */
typedef struct dsExportJob dsExportJob; /* what a writer writes from and into (ds_internal.h) */
typedef struct {
  const char *name;               /* --to NAME */
  dsKind out_kind;                /* DS_KIND_HDF5: out is one HDF5 file; DS_KIND_DIR: out is a directory */
  int (*write)(dsExportJob *job); /* write the export into the job's temp file or directory */
  const char *dir_marker; /* DS_KIND_DIR: the file (relative to out) every output of this format has */
  const char *help;       /* one line for `dataset --help` */
} dsExportFormat;
const dsExportFormat *ds_export_format(int i);          /* row i of the table; NULL past the last */
const dsExportFormat *ds_export_find(const char *name); /* NULL when no row has that name */

typedef struct {
  int64_t episodes, steps;                           /* written */
  char keys[DS_MAX_KEYS * (DS_NAME_MAX + 1) + 1];    /* observation keys written, comma-separated */
  char skipped[DS_MAX_KEYS * (DS_NAME_MAX + 1) + 1]; /* observation keys left out ("" when none) */
  char why[256];                                     /* why they were left out ("" when none) */
  char note[512];                                    /* the format's own words (minari: the dataset id) */
} dsConvertResult;
/* Convert the dataset at path to the format named `to` (a row's name) at out; res (optional) says what
 * was written and what was left out. Refuses a dataset without demos, a demo a format cannot hold, and
 * an export that would hold no observation key. */
int ds_convert(const char *path, const char *to, const char *out, int force, dsConvertResult *res);

/* ---- synthetic recordings (tests, benchmarks, the first-minute demo) ----
 * A point end effector driven toward a random goal by a noisy proportional controller,
 * recorded through the real writer: obs robot0_eef_pos (3), goal_pos (3), robot0_eef_vel (3),
 * optional agentview_image (PX,PX,3) drawing the point and the goal; 7-D actions
 * (xyz deltas, zero rotation, gripper); states (6). Success: within 0.05 of the goal.
 * Not paced: timestamps are nominal (step / 20 Hz); device attr "synthetic". */
typedef struct {
  int demos, steps, image_px;
  uint64_t seed;
  const char *task;     /* env name, default "synth_reach" */
  double noise;         /* action noise, default 0.3 */
  double publish_ratio; /* writer option, default as ds_writer_default (1.0) */
  int lowdim_gzip;
} dsSynthOpts;
typedef struct {
  int demos, successes;
  int64_t steps;
  double seconds; /* wall time from open to close */
} dsSynthResult;
void ds_synth_default(dsSynthOpts *o);
int ds_synth(const char *path, const dsSynthOpts *o, dsSynthResult *r);

#ifdef __cplusplus
}
#endif
#endif
