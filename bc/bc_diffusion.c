/* bc/bc_diffusion.c -- Diffusion Policy (bc.h, bc_diff_*): the schedule, the noise-level embedding, the
 * description in the policy file, and one plan (DDIM or DDPM sampling through the denoiser). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bc.h"

#define SCHEDULE "squaredcos_cap_v2"

void bc_diff_default(bcDiffusion *d) {
  memset(d, 0, sizeof *d);
  d->obs_horizon = 2;
  d->horizon = 16;
  d->exec = 8;
  d->train_steps = 100;
  d->sample_steps = 16;
  d->ddpm = 0;
  d->temb = 32;
  d->clip = 1.0;
  d->sample = 1;
}

/* The squared-cosine schedule (Nichol & Dhariwal; diffusers' "squaredcos_cap_v2"): beta_i = min(1 -
 * f((i+1)/T) / f(i/T), 0.999), f(t) = cos((t + 0.008) / 1.008 * pi / 2)^2; abar the running product of
 * 1 - beta. */
static void schedule(bcDiffusion *d) {
  const int T = d->train_steps;
  double prod = 1.0;
  for (int i = 0; i < T; i++) {
    double f0 = cos(((double)i / T + 0.008) / 1.008 * M_PI / 2),
           f1 = cos(((double)(i + 1) / T + 0.008) / 1.008 * M_PI / 2);
    double beta = fmin(1.0 - (f1 * f1) / (f0 * f0), 0.999);
    prod *= 1.0 - beta;
    d->abar[i] = prod;
  }
}

int bc_diff_step_inputs(const bcDiffusion *d, const nnArch *arch) {
  if (d->obs_horizon < 1) return -1;
  const int rest = arch->obs_dim - arch->act_dim - d->temb;
  return rest > 0 && rest % d->obs_horizon == 0 ? rest / d->obs_horizon : -1;
}

int bc_diff_validate(bcDiffusion *d, const nnArch *arch) {
  if (d->obs_horizon < 1 || d->obs_horizon > 16)
    return tk_error(TK_ERANGE, "diffusion: obs_horizon %d not in 1..16", d->obs_horizon);
  if (d->horizon < 1 || d->horizon > 64)
    return tk_error(TK_ERANGE, "diffusion: horizon %d not in 1..64", d->horizon);
  if (d->exec < 1 || d->exec > d->horizon)
    return tk_error(TK_ERANGE, "diffusion: exec %d not in 1..horizon (%d)", d->exec, d->horizon);
  if (d->train_steps < 2 || d->train_steps > BC_DIFF_MAX_STEPS)
    return tk_error(TK_ERANGE, "diffusion: train_steps %d not in 2..%d", d->train_steps, BC_DIFF_MAX_STEPS);
  if (d->sample_steps < 1 || d->sample_steps > d->train_steps)
    return tk_error(TK_ERANGE, "diffusion: sample_steps %d not in 1..train_steps (%d)", d->sample_steps,
                    d->train_steps);
  if (d->temb < 2 || d->temb > 1024 || d->temb % 2)
    return tk_error(TK_ERANGE, "diffusion: temb %d is not an even size in 2..1024", d->temb);
  if (!(d->clip > 0 && d->clip <= 1e6))
    return tk_error(TK_ERANGE, "diffusion: clip %g not in (0, 1e6]", d->clip);
  if (arch->head != NN_HEAD_MSE || arch->tanh || arch->rnn_layers > 0)
    return tk_error(TK_EINVAL,
                    "diffusion: the denoiser must be an MLP or U-Net with an MSE head without tanh");
  if (d->unet != (arch->unet.levels > 0))
    return tk_error(TK_EINVAL, "diffusion: the denoiser is \"%s\" but the network is %s",
                    d->unet ? "unet" : "mlp", arch->unet.levels > 0 ? "a U-Net" : "an MLP");
  if (d->unet && (arch->unet.horizon != d->horizon || arch->unet.temb != d->temb))
    return tk_error(TK_EINVAL,
                    "diffusion: the U-Net's horizon %d and embedding %d are not the policy's %d and %d",
                    arch->unet.horizon, arch->unet.temb, d->horizon, d->temb);
  if (arch->act_dim % d->horizon)
    return tk_error(TK_EINVAL, "diffusion: the network's %d outputs are not %d actions", arch->act_dim,
                    d->horizon);
  if (bc_diff_step_inputs(d, arch) < 1)
    return tk_error(TK_EINVAL,
                    "diffusion: the network's %d inputs are not %d observation steps + %d noisy actions + a "
                    "%d-value embedding",
                    arch->obs_dim, d->obs_horizon, arch->act_dim, d->temb);
  schedule(d);
  return 0;
}

void bc_diff_embed(int temb, double k, float *out) {
  const int h = temb / 2;
  for (int j = 0; j < h; j++) {
    double f = h > 1 ? exp(-log(10000.0) * j / (h - 1)) : 1.0;
    out[j] = (float)sin(k * f);
    out[h + j] = (float)cos(k * f);
  }
}

cJSON *bc_diff_to_json(const bcDiffusion *d) {
  cJSON *j = cJSON_CreateObject();
  if (!j) return NULL;
  int ok = cJSON_AddNumberToObject(j, "obs_horizon", d->obs_horizon) &&
           cJSON_AddNumberToObject(j, "horizon", d->horizon) && cJSON_AddNumberToObject(j, "exec", d->exec) &&
           cJSON_AddNumberToObject(j, "train_steps", d->train_steps) &&
           cJSON_AddNumberToObject(j, "sample_steps", d->sample_steps) &&
           cJSON_AddStringToObject(j, "sampler", d->ddpm ? "ddpm" : "ddim") &&
           cJSON_AddNumberToObject(j, "temb", d->temb) && cJSON_AddNumberToObject(j, "clip", d->clip) &&
           cJSON_AddStringToObject(j, "schedule", SCHEDULE) &&
           cJSON_AddStringToObject(j, "prediction", d->sample ? "sample" : "epsilon") &&
           cJSON_AddStringToObject(j, "denoiser", d->unet ? "unet" : "mlp");
  if (!ok) {
    cJSON_Delete(j);
    return NULL;
  }
  return j;
}

static int json_int(const cJSON *j, const char *k, int *v) {
  const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, k);
  if (!cJSON_IsNumber(x) || !(fabs(x->valuedouble) < 1e9) || x->valuedouble != (double)(int)x->valuedouble)
    return tk_error(TK_EFORMAT, "diffusion: \"%s\" is missing or not an integer", k);
  *v = (int)x->valuedouble;
  return 0;
}

static int json_str(const cJSON *j, const char *k, const char *a, const char *b, int *which) {
  const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, k);
  if (cJSON_IsString(x) && !strcmp(x->valuestring, a))
    *which = 0;
  else if (cJSON_IsString(x) && b && !strcmp(x->valuestring, b))
    *which = 1;
  else
    return tk_error(TK_EFORMAT, "diffusion: \"%s\" must be \"%s\"%s%s%s", k, a, b ? " or \"" : "", b ? b : "",
                    b ? "\"" : "");
  return 0;
}

int bc_diff_from_json(const cJSON *j, bcDiffusion *d) {
  memset(d, 0, sizeof *d);
  const int has_denoiser = cJSON_IsObject(j) && cJSON_GetObjectItemCaseSensitive(j, "denoiser") != NULL;
  if (!cJSON_IsObject(j) || cJSON_GetArraySize(j) != 10 + has_denoiser)
    return tk_error(TK_EFORMAT,
                    "diffusion: must be an object of exactly obs_horizon, horizon, exec, train_steps, "
                    "sample_steps, sampler, temb, clip, schedule, prediction (and denoiser)");
  int rc = json_int(j, "obs_horizon", &d->obs_horizon);
  if (!rc) rc = json_int(j, "horizon", &d->horizon);
  if (!rc) rc = json_int(j, "exec", &d->exec);
  if (!rc) rc = json_int(j, "train_steps", &d->train_steps);
  if (!rc) rc = json_int(j, "sample_steps", &d->sample_steps);
  if (!rc) rc = json_int(j, "temb", &d->temb);
  if (!rc) rc = json_str(j, "sampler", "ddim", "ddpm", &d->ddpm);
  int one;
  if (!rc) rc = json_str(j, "schedule", SCHEDULE, NULL, &one);
  if (!rc) rc = json_str(j, "prediction", "epsilon", "sample", &d->sample);
  if (!rc && has_denoiser) rc = json_str(j, "denoiser", "mlp", "unet", &d->unet);
  const cJSON *c = cJSON_GetObjectItemCaseSensitive(j, "clip");
  if (!rc && !cJSON_IsNumber(c)) rc = tk_error(TK_EFORMAT, "diffusion: \"clip\" is missing or not a number");
  if (!rc) d->clip = c->valuedouble;
  return rc;
}

int bc_diff_scratch(const bcPolicy *p) { return p->arch.obs_dim + p->arch.act_dim; } /* the input row, eps */

/* One denoiser call: eps [n] for the noisy chunk x at level k. */
static int denoise(const bcPolicy *p, nnWork *w, float *in, int hist_n, const float *x, int k, float *eps) {
  const int n = p->arch.act_dim;
  memcpy(in + hist_n, x, sizeof(float) * (size_t)n);
  bc_diff_embed(p->dif.temb, k, in + hist_n + n);
  return nn_run(p->net, w, NULL, in, 1, 1, eps);
}

/* the clean estimate from the network's output o at x (the sample itself, or from the noise), clipped */
static double clean(const bcDiffusion *d, float x, float o, double sa, double sb) {
  const double x0 = d->sample ? (double)o : ((double)x - sb * o) / sa;
  return fmax(-d->clip, fmin(d->clip, x0));
}

int bc_diff_plan(const bcPolicy *p, nnWork *w, const float *hist, tkRng *rng, const float *x_T,
                 float *scratch, float *out) {
  const bcDiffusion *d = &p->dif;
  if (d->horizon < 1) return tk_error(TK_EINVAL, "bc_diff_plan: not a diffusion policy");
  if (!rng && (!x_T || d->ddpm)) return tk_error(TK_EINVAL, "bc_diff_plan: no noise (rng or x_T)");
  const int n = p->arch.act_dim, hist_n = p->arch.obs_dim - n - d->temb;
  float *in = scratch, *eps = scratch + p->arch.obs_dim, *x = out;
  memcpy(in, hist, sizeof(float) * (size_t)hist_n);
  for (int i = 0; i < n; i++)
    x[i] = x_T ? x_T[i] : (float)tk_rng_normal(rng);
  const int T = d->train_steps, S = d->ddpm ? T : d->sample_steps, ratio = T / S;
  for (int s = S - 1; s >= 0; s--) {
    const int k = s * ratio, prev = k - ratio; /* DDPM: ratio 1 */
    int rc = denoise(p, w, in, hist_n, x, k, eps);
    if (rc) return rc;
    const double at = d->abar[k], ap = prev >= 0 ? d->abar[prev] : 1.0;
    const double sa = sqrt(at), sb = sqrt(1.0 - at), spa = sqrt(ap), spb = sqrt(1.0 - ap);
    if (!d->ddpm) { /* DDIM, eta 0: x_prev = sqrt(ap) x0 + sqrt(1 - ap) eps (eps made consistent with the
                       clip) */
      for (int i = 0; i < n; i++) {
        double x0 = clean(d, x[i], eps[i], sa, sb);
        double e = ((double)x[i] - sa * x0) / sb;
        x[i] = (float)(spa * x0 + spb * e);
      }
    } else { /* DDPM: the posterior mean, plus noise of the "fixed small" variance but at the last step */
      const double cur_a = at / ap, cur_b = 1.0 - cur_a;
      const double c0 = spa * cur_b / (1.0 - at), ct = sqrt(cur_a) * (1.0 - ap) / (1.0 - at);
      const double sd = k > 0 ? sqrt(fmax((1.0 - ap) / (1.0 - at) * cur_b, 1e-20)) : 0.0;
      for (int i = 0; i < n; i++) {
        double x0 = clean(d, x[i], eps[i], sa, sb);
        x[i] = (float)(c0 * x0 + ct * x[i] + (k > 0 ? sd * tk_rng_normal(rng) : 0.0));
      }
    }
  }
  for (int i = 0; i < n; i++) /* the last step's x is the clean estimate: keep it in range */
    x[i] = (float)fmax(-d->clip, fmin(d->clip, (double)x[i]));
  return 0;
}
