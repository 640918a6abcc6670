/* bc/bc.h -- policies, behavior-cloning training and rollout evaluation (prefix bc_).
 *
 * A policy is a network (nn.h) plus everything needed to use it on raw observations: the observation
 * keys it reads (in order) and their sizes, observation normalization (z-score), action scaling, and the
 * task it was made for. RL (rl_finetune/) writes its policies in the same file format, so bc-eval, the
 * viewer and teleop's intervention mode read both.
 *
 * policy.h5 (HDF5, readable with h5py; see bc/README.md):
 *   /                 attrs  format = "demokit.policy" (string), version = 1 (int),
 *                            arch = nn_arch JSON (string), obs_keys = JSON list of names (string),
 *                            obs_dims = JSON list of sizes (string), task = "lift" or "" (string),
 *                            control_hz (double), algo = "bc" | "sac" | "ppo" (string),
 *                            info = JSON object of training facts (string, free-form),
 *                            chunk = actions predicted per step (int, optional, absent = 1)
 *   /normalization/obs_mean    float32 [obs_dim]   x = (obs - obs_mean) / obs_std
 *   /normalization/obs_std     float32 [obs_dim]   (every value > 0)
 *   /normalization/act_offset  float32 [act_dim]   action = act_offset + act_scale * net_action
 *   /normalization/act_scale   float32 [act_dim]   (every value > 0)
 *   /weights/<tensor name>     float32, the nn tensor shapes (l0.weight [out, in], l0.bias [out],
 * ln0.gain,...) The network's input is the normalized observation (keys concatenated in obs_keys order); its
 * deterministic action (nn_act) is mapped through act_offset/act_scale.
 * A policy with cameras: arch also holds "encoders", a list of {"key": "agentview_image", "frame": [H, W, C],
 * "crop": [h, w], "encoder": nn_enc_arch JSON}; /weights/enc<i>.<tensor> hold encoder i's tensors (conv
 * weights [out, in, kh, kw] as torch's Conv2d); the trunk's input is [normalized low-dim keys | encoder 0's
 * features | encoder 1's | ...], an encoder reading the centre crop of its frame as float / 255, CHW.
 *
 * Loading validates everything (format, version, arch, keys against dims, every tensor's presence, rank,
 * shape and finiteness, the statistics) and names the file and the problem in one line. Every tensor's
 * type, shape and written data are checked from what the file declares (nothing extra either) BEFORE the
 * network is allocated, and the architecture is bounded (NN_MAX_PARAMS), so a small file that declares
 * a huge network costs no memory.
 *
 * Acting vs training: a loaded or cloned policy's network is made to act (nn_net_make_acting: parameters
 * only, no gradients or Adam moments); bc_policy_make's is made to train. To train from a loaded policy,
 * copy it into a bc_policy_make'd one (rl-finetune's actor) or call nn_net_add_training(p->net).
 */
#ifndef BC_H
#define BC_H

#include <stdint.h>

#include "cap.h"
#include "ds.h"
#include "nn.h"

#ifdef __cplusplus
extern "C" {
#endif

#define BC_POLICY_FORMAT "demokit.policy"
#define BC_POLICY_VERSION 1
#define BC_MAX_KEYS 16
#define BC_KEY_MAX 64

#define BC_MAX_IMAGES 4 /* cameras a policy reads at most */

/* A camera a policy sees: its frames as the camera gives them (uint8, H x W x C), the crop its encoder
 * reads (a random crop per sample in training, the centre crop when acting; crop = frame: none), the
 * encoder (nn.h: input [C, crop_h, crop_w] float, the frame / 255) and its features' size. */
typedef struct {
  char key[BC_KEY_MAX]; /* observation key: agentview_image, robot0_eye_in_hand_image, ... */
  int height, width, channels;
  int crop_h, crop_w;
  nnEncArch enc_arch;
  nnEnc *enc; /* NULL in a bcImageSpec */
} bcImage;

/* Diffusion Policy (Chi et al. 2023): the network is a denoiser. Its input is [the last obs_horizon steps'
 * inputs (each: normalized low-dim keys | cameras' features), oldest first | a noisy chunk of `horizon`
 * normalized actions from the current step on | a sinusoidal embedding of the noise level (temb)], its
 * output the clean chunk ("sample" prediction, the default: an MLP without FiLM conditioning learns it far
 * more easily than the noise, whose scale varies 70-fold with the level) or the noise ("epsilon"). Training
 * draws a level k of train_steps (squared-cosine schedule) per sample; acting starts from Gaussian noise (the
 * episode's seeded generator), denoises in sample_steps DDIM steps (eta 0; or train_steps DDPM steps),
 * clipping the clean estimate to +-clip, and executes the first `exec` actions before planning again
 * (receding horizon). Stored in arch as "diffusion": {...} (bc_diff_to_json); the policy's chunk is
 * `horizon`. */
#define BC_DIFF_MAX_STEPS 1000
typedef struct {
  int obs_horizon;  /* observation steps the denoiser reads (default 2) */
  int horizon;      /* actions it predicts (default 16); 0: not a diffusion policy */
  int exec;         /* actions executed per plan (default 8) */
  int train_steps;  /* noise levels (default 100) */
  int sample_steps; /* DDIM steps when acting (default 16; DDPM uses train_steps) */
  int ddpm;         /* 1: DDPM ancestral sampling (posterior variance "fixed small"), else DDIM */
  int temb;         /* noise-level embedding size (even; default 32) */
  double clip;      /* the clean estimate is clipped to [-clip, clip] (default 1: actions in [-1, 1]) */
  int sample;       /* 1: the network predicts the clean chunk ("sample", the default), 0: the noise
                       ("epsilon", DDPM's) */
  int unet;         /* the denoiser: 1 a 1-D temporal U-Net with FiLM (arch.unet, nn.h), 0 an MLP (the
                       default; files without "denoiser" have one) */
  double abar[BC_DIFF_MAX_STEPS]; /* cumulative alpha of each level (bc_diff_schedule) */
} bcDiffusion;

void bc_diff_default(bcDiffusion *d); /* the defaults above, horizon 16 (a diffusion policy) */
/* Sizes in range and the network fitting them: an MSE head without tanh, no LSTM, arch->act_dim a multiple
 * of horizon, and arch->obs_dim = obs_horizon * (inputs of a step) + arch->act_dim + temb; a U-Net exactly
 * when d->unet, of d's horizon and temb. Fills abar. */
int bc_diff_validate(bcDiffusion *d, const nnArch *arch);
/* The network's inputs per observation step (arch->obs_dim without the noisy chunk and the embedding). */
int bc_diff_step_inputs(const bcDiffusion *d, const nnArch *arch);
/* The noise-level embedding (temb floats) of level k: sin(k f_j) then cos(k f_j), f_j = 10000^(-j/(h-1)). */
void bc_diff_embed(int temb, double k, float *out);
struct cJSON;
struct cJSON *bc_diff_to_json(const bcDiffusion *d);
/* strict: every key, nothing else; "denoiser" ("mlp" or "unet") may be absent (an MLP: files before it) */
int bc_diff_from_json(const struct cJSON *j, bcDiffusion *d);

typedef struct bcPolicy {
  nnArch arch; /* the trunk: its input is [normalized low-dim keys | every camera's features] (a residual
                  policy's: [normalized low-dim keys | the base policy's action, normalized]) */
  nnNet *net;
  int nimg; /* cameras (0: a low-dim policy) */
  bcImage img[BC_MAX_IMAGES];
  int feat_dim; /* the cameras' features together (a residual policy: the base's action) */
  int nkeys;    /* low-dim keys (0 allowed when the policy has cameras) */
  char keys[BC_MAX_KEYS][BC_KEY_MAX];
  int key_dim[BC_MAX_KEYS];
  int obs_dim, act_dim;          /* obs_dim: the low-dim keys together (arch.obs_dim = obs_dim + feat_dim) */
  float *obs_mean, *obs_std;     /* [obs_dim] */
  float *act_offset, *act_scale; /* [act_dim] */
  char task[BC_KEY_MAX];         /* "" when unknown (a foreign dataset's env) */
  double control_hz;             /* 0 when unknown */
  char algo[16];                 /* "bc", "sac", "ppo" */
  int chunk;                     /* actions predicted per step (action chunking, ACT); the network's output
                                    is chunk x act_dim; attr "chunk", absent = 1 */
  char *info;                    /* JSON object text (malloc'd), "{}" when none */
  bcDiffusion dif;               /* dif.horizon > 0: a diffusion policy (its network the denoiser) */
  /* A residual policy (rl-finetune's --scheme residual): base is a frozen policy of any kind, which acts
   * first; this policy's network reads [its keys | base's action, normalized to [-1, 1]] and corrects it:
   * a = clip(a_base + residual_scale * tanh-output, -1, 1) in the normalized action space (the base's
   * act_offset/act_scale, which this policy shares). Saved as the group /base of the same file.
   * base NULL: an ordinary policy. The policy owns base. */
  struct bcPolicy *base;
  double residual_scale;
} bcPolicy;

/* A policy with identity statistics and a freshly initialized network (seeded) made to train. keys/dims
 * give the observation layout; their sum must equal arch->obs_dim. */
bcPolicy *bc_policy_make(const nnArch *arch, int nkeys, const char *const *keys, const int *dims,
                         uint64_t seed);
/* The same with cameras: img[i] gives key, frame size, crop and encoder architecture (enc unused); the
 * trunk's arch->obs_dim must be the low-dim sizes plus every encoder's output. Encoder i is initialized
 * from seed + 1 + i. nkeys may be 0 when nimg > 0. */
bcPolicy *bc_policy_make_images(const nnArch *arch, int nkeys, const char *const *keys, const int *dims,
                                int nimg, const bcImage *img, uint64_t seed);
/* A diffusion policy: arch is the denoiser's (bc_diff_validate), chunk = d->horizon. */
bcPolicy *bc_policy_make_diffusion(const nnArch *arch, int nkeys, const char *const *keys, const int *dims,
                                   int nimg, const bcImage *img, const bcDiffusion *d, uint64_t seed);
/* One plan of a diffusion policy: hist [obs_horizon, step inputs] (normalized, oldest first) -> out
 * [horizon, act_dim] normalized actions. The starting noise is x_T (horizon * act_dim floats) if given,
 * else drawn from rng (DDPM draws every step's noise from rng too). scratch: bc_diff_scratch(p) floats. */
int bc_diff_plan(const bcPolicy *p, nnWork *w, const float *hist, tkRng *rng, const float *x_T,
                 float *scratch, float *out);
int bc_diff_scratch(const bcPolicy *p);
void bc_policy_free(bcPolicy *p); /* NULL-safe */
/* Deep copy to act: network parameters included, made to act (no gradients or Adam state). */
bcPolicy *bc_policy_clone(const bcPolicy *p);
/* A residual policy on base (taken over: freed with the policy, also on failure): arch->obs_dim must be
 * the keys' sum plus base->act_dim and arch->act_dim base->act_dim; the statistics are identity for the
 * keys and the base's for the actions. scale in (0, 2]. Made to train. */
bcPolicy *bc_policy_make_residual(const nnArch *arch, int nkeys, const char *const *keys, const int *dims,
                                  bcPolicy *base, double scale, uint64_t seed);
/* a = clip(a_base + scale * d, -1, 1) for A values in the normalized action space; mask (may be NULL):
 * 1 where a was not clipped (where da/dd = scale). In environment units a residual policy acts
 * act_base + act_scale * (a - a_base): with no correction, the base's action bit for bit. */
void bc_residual_apply(double scale, const float *a_base, const float *d, int A, float *a, uint8_t *mask);
int bc_policy_set_info(bcPolicy *p, const char *json); /* replaces info; json must be an object */
/* Write atomically (temp file, fsync, rename, directory fsync). */
int bc_policy_save(const bcPolicy *p, const char *path);
/* Read and validate; NULL with tk_error() naming the file and the problem. The network is made to act. */
bcPolicy *bc_policy_load(const char *path);

/* The network's input for B raw observations [B, obs_dim]: (obs - obs_mean) / obs_std. */
void bc_policy_normalize(const bcPolicy *p, const float *obs, int B, float *out);
/* Deterministic actions for B raw observations: obs [B, obs_dim] float32 (keys concatenated) ->
 * act [B, act_dim] (float64, environment units). w must be made for p->net with max_batch >= B;
 * scratch must hold B * (obs_dim + act_dim) floats. */
int bc_policy_act(const bcPolicy *p, nnWork *w, const float *obs, int B, float *scratch, double *act);
/* Floats of scratch bc_policy_act and bc_policy_act_chunk need per observation. */
int bc_policy_scratch(const bcPolicy *p);
/* The whole chunk: act [B, chunk, act_dim] (environment units), the next chunk actions from now. */
int bc_policy_act_chunk(const bcPolicy *p, nnWork *w, const float *obs, int B, float *scratch, double *act);
/* Make p predict k actions per step: its network's output (arch.act_dim) must be k times the action size.
 * A recurrent policy (arch.rnn_layers > 0) predicts one. */
int bc_policy_set_chunk(bcPolicy *p, int k);
/* Whether acting needs an episode's state (a bcEnsemble): chunked, recurrent and diffusion policies do. */
int bc_policy_has_state(const bcPolicy *p);

/* An episode's acting state. For a chunked policy, temporal ensembling (ACT): the action for step t is
 * the mean of what the predictions made at steps t-k+1..t said about step t. For a recurrent policy, its
 * LSTM state, back to zero every arch.rnn_horizon steps (robomimic's BC-RNN rollouts; training sequences
 * are that long). For a diffusion policy, its observation history, the plan being run and the sampling
 * noise's generator. Reset it at every episode. */
typedef struct bcEnsemble bcEnsemble;
bcEnsemble *bc_ensemble_make(const bcPolicy *p);
void bc_ensemble_reset(bcEnsemble *e);
/* The same, and a diffusion policy's sampling noise from seed (the episode's: the episode then acts the same
 * in any worker and order; bc_ensemble_reset keeps the generator running). */
void bc_ensemble_reset_seed(bcEnsemble *e, uint64_t seed);
/* pred: this step's chunk [chunk, act_dim]; act: the action to take now [act_dim]. */
void bc_ensemble_step(bcEnsemble *e, const double *pred, double *act);
void bc_ensemble_free(bcEnsemble *e);
/* One step of acting on one raw observation [obs_dim]: the ensembled action of a chunked policy, the
 * next action of a recurrent one (both need e), bc_policy_act's for any other (e may be NULL, and is not
 * used). Every rollout can make an episode state for any policy and call this. act [act_dim].
 * bc_policy_act and bc_policy_act_chunk refuse a recurrent policy. */
int bc_policy_step(const bcPolicy *p, nnWork *w, bcEnsemble *e, const float *obs, float *scratch,
                   double *act);

/* ---- binding a policy to an environment ------------------------------------------------------- */
/* Where each policy key lives in an environment's observations. */
typedef struct {
  int nkeys;
  int obs_index[BC_MAX_KEYS]; /* index into capSpec.obs */
  int dim[BC_MAX_KEYS];
  int obs_dim;
  int nimg;
  int img_index[BC_MAX_IMAGES]; /* the cameras' keys, index into capSpec.obs */
} bcBinding;
/* Check that the policy fits the model's task: every key present, low-dim, same size, every camera key
 * present with the frame size the policy was trained on, and the same action size. On a mismatch the
 * message lists both sides. */
int bc_bind(const bcPolicy *p, const capModel *m, bcBinding *b);
/* The cameras the policy reads, added to co (what cap_model_load renders): camera agentview for key
 * agentview_image, eye_in_hand for robot0_eye_in_hand_image, at the frame size the policy was trained on.
 * A camera co already renders must have that size (else an error naming both sizes). */
int bc_policy_cameras(const bcPolicy *p, capOpts *co);
/* bc_policy_cameras, then cap_model_load; a camera the environment does not have is refused with the
 * policy's cameras and the model's. */
int bc_policy_model_load(const bcPolicy *p, capOpts *co, capModel **m);

/* Acting in an environment, one thread: the binding, the networks' work, scratch and the episode state
 * (a chunked policy's ensemble, a recurrent one's LSTM state), allocated once. Every kind of policy
 * acts through it: low-dim, chunked, recurrent, with cameras. */
typedef struct bcActor bcActor;
bcActor *bc_actor_make(const bcPolicy *p, const capModel *m); /* NULL with the binding's error */
/* At every episode's start; seed: the episode's (a diffusion policy's sampling noise comes from it, so an
 * episode acts the same in any worker and order). */
void bc_actor_reset(bcActor *a, uint64_t seed);
/* The action [act_dim] (environment units) for the observation o (a capObs of m's environment). */
int bc_actor_step(bcActor *a, const void *cap_obs, double *act);
void bc_actor_free(bcActor *a); /* NULL-safe */
/* Gather the bound keys of an observation (capObs) into obs_dim floats. */
void bc_gather(const bcBinding *b, const void *cap_obs, float *out);

/* Dataset writer options for recording an environment's observations (every key of its spec,
 * states, the robomimic env_args with the cameras listed): kw is a buffer for the env_kwargs JSON
 * that wo points into. Used by teleop and by rollouts saved as datasets. */
int bc_writer_opts(const capModel *m, int ncams, const capCamera *cams, dsWriterOpts *wo, char *kw,
                   size_t kwn);

/* ---- rollouts ----------------------------------------------------------------------------------- */
typedef struct {
  int episodes;            /* 50 */
  uint64_t seed;           /* episode i resets with seed + i */
  int workers;             /* threads, each with its own environment (default: online cores) */
  int horizon;             /* 0: the task's */
  const char *save;        /* not NULL: write the rollouts to this new dataset (robomimic layout); an existing
                              file is refused (never appended to), and replaced only with force */
  int quiet;               /* no progress bar */
  int force;               /* --force: replace an existing save file */
  const char *policy_path; /* the policy file (an input: never the save file), or NULL */
} bcEvalOpts;

typedef struct {
  int episodes;
  int successes;
  double success_rate;
  double mean_return, mean_length;
  double *returns;  /* [episodes] (malloc'd; bc_eval_result_free) */
  int *lengths;     /* [episodes] */
  uint8_t *success; /* [episodes] */
  double seconds;
  int64_t env_steps;
} bcEvalResult;

void bc_eval_default(bcEvalOpts *o);
/* Roll the policy out (deterministic actions) on m's task; an episode succeeds when the task's
 * success criterion holds (it ends there). */
int bc_evaluate(const bcPolicy *p, const capModel *m, const bcEvalOpts *o, bcEvalResult *r);
void bc_eval_result_free(bcEvalResult *r);

/* ---- image observations (bc_images.c) ----------------------------------------------------------- */
/* Image observations for training: uint8 frames as stored (H, W, C), one block per key, rows in the
 * order of a dsLoaded (its demos, their steps). */
typedef struct {
  int nkeys;
  char key[BC_MAX_KEYS][BC_KEY_MAX];
  int h[BC_MAX_KEYS], w[BC_MAX_KEYS], c[BC_MAX_KEYS]; /* per-step shape (H, W, C); C is 3 */
  int rendered[BC_MAX_KEYS];                          /* 1: re-rendered from the demos' states (not read) */
  int64_t n;                                          /* rows */
  uint8_t *data[BC_MAX_KEYS];                         /* n * h * w * c each, pointers into block_ */
  void *block_;                                       /* the one allocation behind data */
} bcImages;
/* Whether key names an image observation of f: uint8 rank 3 in the file's schema (ds_key_is_image), or
 * the key of one of the render cameras (cap_camera_key: "agentview" -> "agentview_image",
 * "eye_in_hand" -> "robot0_eye_in_hand_image"). */
int bc_is_image_key(dsFile *f, const char *key, int nrender, const capCamera *render);
/* Load the image keys for the demos of L (same rows, same order; L from ds_load on f). A key a render
 * camera names is rendered from each demo's stored states (robomimic's dataset_states_to_obs) in the
 * dataset's task at the camera's size, in parallel workers (one per usable core, each with its own
 * environment and renderer), with a progress bar unless quiet; every other key is read from the file
 * (uint8 H,W,3). A key the file has AND a render camera names is rendered: the explicit request wins
 * (another size, or frames made again), and a line says so unless quiet. Every render camera must name
 * one of the keys. Before loading, prints (unless quiet) one line with the memory the frames take, and
 * refuses with TK_ENOMEM and one line giving the need and what is available when the frames (and, while
 * rendering, the states) would take more than the available memory less a quarter of it (at least
 * 512 MiB). Available: environment DK_MEM_AVAILABLE (bytes) when set, else MemAvailable from
 * /proc/meminfo (no check when neither can be read). Errors name the file and the problem: a key the file
 * lacks (listing its image keys), non-uint8, wrong rank, channels != 3, frames over 4096x4096, a task that
 * is not built in, an unknown camera (listing the task's), a size outside 8x8..640x480, demos without
 * states, a states width that does not match the task's state. On error out is empty. */
int bc_images_load(dsFile *f, const dsLoaded *L, int nkeys, const char *const *keys, int nrender,
                   const capCamera *render, int quiet, bcImages *out);
void bc_images_free(bcImages *im); /* NULL-safe, and on a zeroed struct; leaves it zeroed */

/* ---- training --------------------------------------------------------------------------------- */
typedef struct {
  const char *dataset;         /* robomimic-layout HDF5 (ours or another tool's) */
  const char *out;             /* policy file (default "policy.h5") */
  const char *metrics_prefix;  /* "<prefix>.csv", "<prefix>_loss.png", "<prefix>_success.png";
                                  NULL: the out path without ".h5" */
  const char *const *obs_keys; /* NULL: robomimic's low-dim keys when present, else every low-dim key */
  int nobs_keys;
  const char *filter_key; /* training demos: this mask (default: every demo not in the validation set) */
  double valid_frac;      /* validation demos when the file has no mask/valid (default 0.1) */
  int include_failures;   /* also train on demos marked success=0 (default 0) */
  int epochs;             /* passes over the training samples (default 200) */
  int batch;              /* 100 (robomimic) */
  nnAdamOpts adam;        /* lr 1e-4 (robomimic), no weight decay, no clipping */
  nnArch arch;            /* obs_dim/act_dim are filled in; hidden 1024,1024 (robomimic), MSE head with tanh
                             (robomimic's bc.json default; GMM 5 modes is --head gmm) */
  double obs_noise;       /* training batches: Gaussian noise of this std on the normalized observations */
  unsigned given;         /* BC_GIVEN_* bits: options the user set (the others take the camera defaults
                             when the policy has cameras) */
  double ema;             /* 0: off; else rollouts and the saved policy use an exponential moving average
                             of the weights with this decay (warm-up: min(ema, (1 + step) / (10 + step))) */
  int chunk;              /* predict this many actions per step (ACT's action chunking; rollouts average
                             the overlapping predictions); default 1 */
  int diffusion;          /* --head diffusion: a Diffusion Policy with dif's settings (bcDiffusion) */
  bcDiffusion dif;        /* bc_diff_default's unless set (--obs-horizon, --action-horizon, ...) */
  nnUnetArch unet;        /* dif.unet (--denoiser unet): levels, channels, kernel, groups (--unet-dims,
                             --unet-kernel; default 32,64,128, 5, 8); horizon and temb follow dif */
  int crop_h, crop_w;     /* cameras: random crop size in training (0: the frame minus 10%, 84 -> 76) */
  int encoder_width;      /* cameras: conv channels of the encoder (nn_enc_arch_default; default 32) */
  double obs_std_floor;   /* normalization: std = max(std, floor) (default 0.1: dimensions that
                             barely vary in the demos must not be blown up at rollout time) */
  uint64_t seed;          /* initialization, split, shuffling */
  int threads;            /* training team (default online cores) */
  int eval_every;         /* epochs between rollouts (0 = none; default 20) */
  int eval_episodes;      /* rollouts each time (default 20) */
  int quiet;
  int force;          /* replace an existing output of another kind (ds_output_check); inputs never */
  const char *config; /* the config file the options came from (an input: never an output), or NULL */
  int nrender;        /* --render-cameras: image keys rendered from the demos' states (bc_images_load) */
  capCamera render[CAP_MAX_CAMS];
} bcTrainOpts;

typedef struct {
  int epochs_run;
  int64_t steps; /* gradient steps */
  int64_t train_samples, valid_samples;
  int train_demos, valid_demos, skipped_failures;
  double final_train_loss, final_valid_loss; /* valid NaN when there is no validation split */
  int best_epoch;                            /* epoch of the saved policy */
  double best_success;                       /* its rollout success rate, NaN without rollouts */
  int evaluated;                             /* rollouts were run */
  double samples_per_s;                      /* training throughput */
  double seconds;
  int stopped_nan; /* training stopped on a non-finite loss */
} bcTrainResult;

void bc_train_default(bcTrainOpts *o);
/* Defaults that differ for a policy with cameras, chosen by measurement on lift (docs/results.md):
 * unless the user set them (bcTrainOpts.given), these replace lr, epochs and ema. */
enum {
  BC_GIVEN_LR = 1,
  BC_GIVEN_EPOCHS = 2,
  BC_GIVEN_EMA = 4,
  BC_GIVEN_EXEC = 8,          /* --exec-horizon (else at most the action horizon) */
  BC_GIVEN_SAMPLE_STEPS = 16, /* --sample-steps (else at most --diffusion-steps) */
  BC_GIVEN_DIFFUSION = 32     /* any diffusion setting (they need --head diffusion) */
};
#define BC_CAMERA_LR 3e-4
#define BC_CAMERA_EPOCHS 300
#define BC_CAMERA_EMA 0.995
/* Train, evaluate, and save the best policy to o->out, with the metrics CSV and PNG plots. */
int bc_train(const bcTrainOpts *o, bcTrainResult *r);

/* ---- training a policy with cameras ---------------------------------------------------------- */
/* Training a policy with cameras: the camera encoders run data-parallel (the batch's rows split over
 * `threads` threads, each with its own encoder works and gradient blocks, summed in a fixed order), the
 * trunk (an MLP, chunked or not, or BC-RNN's LSTM) on the calling thread, then one Adam step over every
 * network with the gradient norm taken over all of them (clipping as torch's clip_grad_norm_ over every
 * parameter). A sample is T input rows: T = 1 for an MLP trunk, arch.rnn_horizon for an LSTM (a sequence,
 * row b*T + t; BPTT carries the gradient back into every step's frames). A diffusion policy's sample is one
 * trunk row (x [B, arch.obs_dim], whole) of dif.obs_horizon observation steps: rows[b*T + t] is step t's
 * frame row, and its features fill step t's slot. Everything is allocated in
 * bc_vt_make for batches of up to max_batch samples. */
typedef struct bcVisionTrainer bcVisionTrainer;
/* frames[i]: camera i's frames (p->img[i]'s size), row r at frames[i] + r * frame bytes */
bcVisionTrainer *bc_vt_make(bcPolicy *p, const uint8_t *const *frames, int max_batch, int threads);
void bc_vt_free(bcVisionTrainer *vt);
/* One training step on B samples: x [B*T, obs_dim] the normalized low-dim inputs (diffusion: [B,
 * arch.obs_dim] whole rows), y [B*T, arch.act_dim] the targets (diffusion: [B, arch.act_dim]), rows[b*T + t]
 * the frame row of input row b*T + t. Crops are drawn from rng (one per input row and camera). Asking for the
 * gradient norm refuses non-finite gradients (nonzero: nothing updated). */
int bc_vt_step(bcVisionTrainer *vt, const nnAdamOpts *o, const float *x, const float *y, const int64_t *rows,
               int B, tkRng *rng, float *loss, double *grad_norm);
/* The loss on B samples (B*T rows, as bc_vt_step) with centre crops, nothing updated. */
int bc_vt_loss(bcVisionTrainer *vt, const float *x, const float *y, const int64_t *rows, int B, float *loss);
/* Every parameter of the policy (trunk, then each encoder) into / out of buf (bc_vt_nparams floats): the
 * epoch's fallback when a step goes non-finite. */
int64_t bc_vt_nparams(const bcPolicy *p);
void bc_vt_save_params(const bcPolicy *p, float *buf);
void bc_vt_load_params(bcPolicy *p, const float *buf);
/* ema = d ema + (1 - d) params over the same layout (an exponential moving average of the weights) */
void bc_vt_ema_update(const bcPolicy *p, float *ema, float d);

/* Seeds for held-out evaluation: well away from the seeds teleop and the scripted operator record
 * with (0, 1, 2, ...), so evaluation never replays a training demo's initial state. */
#define BC_EVAL_SEED_BASE 1000000000ull
/* Seeds for rollouts that choose the best epoch during training (not the ones bc-eval reports on). */
#define BC_SELECT_SEED_BASE 2000000000ull

#ifdef __cplusplus
}
#endif
#endif
