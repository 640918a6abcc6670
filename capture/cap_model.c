/* capture/cap_model.c -- loading a task (embedded MJCF) or a user's scene once per process,
 * finding the ids the controller needs, and describing the environment (capSpec). */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cap_task.h"
#include "cap_robot.h"

static pthread_mutex_t mj_lock = PTHREAD_MUTEX_INITIALIZER;
void cap_mujoco_lock(void) { pthread_mutex_lock(&mj_lock); }
void cap_mujoco_unlock(void) { pthread_mutex_unlock(&mj_lock); }

static void quiet_warning(const char *msg) { tk_debug("MuJoCo: %s", msg); }
static void fatal_error(const char *msg) {
  /* MuJoCo cannot continue after mju_error; say so in one line instead of its default */
  fprintf(stderr, "MuJoCo fatal error: %s\n", msg);
  fflush(stderr);
  _exit(1);
}

void cap_opts_default(capOpts *o) {
  memset(o, 0, sizeof *o);
  o->task = CAP_DEFAULT_TASK;
  o->control_hz = 20;
  o->action_mode = CAP_ACT_EEF;
}

int cap_camera_parse(const char *opt, const char *s, capCamera *c) {
  const char *colon = strchr(s, ':'), *x = colon ? strchr(colon + 1, 'x') : NULL;
  char w[24], h[24];
  int64_t wv, hv;
  memset(c, 0, sizeof *c);
  if (!colon || !x || colon == s || (size_t)(colon - s) >= sizeof c->name ||
      (size_t)(x - colon - 1) >= sizeof w || tk_copy_name(h, sizeof h, x + 1, "height"))
    return tk_error(TK_EINVAL, "%s %s: expected NAME:WxH (at most %d cameras)", opt, s, CAP_MAX_CAMS);
  memcpy(w, colon + 1, (size_t)(x - colon - 1));
  w[x - colon - 1] = 0;
  if (tk_opt_int("width", w, 1, 65536, &wv) || tk_opt_int("height", h, 1, 65536, &hv))
    return tk_error_wrap(TK_EINVAL, "%s %s", opt, s);
  memcpy(c->name, s, (size_t)(colon - s));
  c->width = (int)wv;
  c->height = (int)hv;
  return 0;
}

int cap_camera_key(const char *camera, char *key, size_t n) {
  if (tk_snprintf(key, n, "%s%s_image", strcmp(camera, "eye_in_hand") ? "" : "robot0_", camera))
    return tk_error(TK_ERANGE, "camera '%.64s': its observation key is longer than %zu bytes", camera, n - 1);
  return 0;
}

/* Load `file` from n in-memory files through MuJoCo's virtual file system (includes resolve among
 * them). The caller holds the MuJoCo lock. */
static mjModel *load_vfs(const capEmbeddedFile *files, int n_files, const char *file, char *err, int nerr) {
  mjVFS *vfs = malloc(sizeof *vfs);
  if (!vfs) {
    snprintf(err, (size_t)nerr, "out of memory");
    return NULL;
  }
  mj_defaultVFS(vfs);
  for (int i = 0; i < n_files; i++) {
    int n = (int)strlen(files[i].text);
    if (mj_makeEmptyFileVFS(vfs, files[i].name, n) != 0) {
      snprintf(err, (size_t)nerr, "model file table full");
      mj_deleteVFS(vfs);
      free(vfs);
      return NULL;
    }
    int k = mj_findFileVFS(vfs, files[i].name);
    memcpy(vfs->filedata[k], files[i].text, (size_t)n);
  }
  mjModel *m = mj_loadXML(file, vfs, err, nerr);
  mj_deleteVFS(vfs);
  free(vfs);
  return m;
}

/* A robot has no simulation: the servo arm's model, posed from the arm's joint positions every tick (the
 * console draws it under the HUD; the simulated bus renders its cameras from it). */
mjModel *cap_robot_display_model(void) {
  char err[512];
  cap_mujoco_lock();
  mjModel *m = load_vfs(cap_embedded_models, cap_n_embedded_models, "servo_arm.xml", err, sizeof err);
  cap_mujoco_unlock();
  if (!m) tk_error(TK_EFORMAT, "servo_arm.xml: %s", err);
  return m;
}

/* The model as one MJCF text (includes flattened), for the dataset's model_file attr. */
static char *save_xml(const mjModel *m) {
  char tmpl[] = "/tmp/demokit-model-XXXXXX";
  int fd = mkstemp(tmpl);
  if (fd < 0) return NULL;
  close(fd);
  char err[512] = "";
  char *text = NULL;
  if (mj_saveLastXML(tmpl, m, err, sizeof err)) tk_read_text(tmpl, &text, NULL);
  unlink(tmpl);
  return text;
}

static int id_of(const mjModel *m, int type, const char *name) { return mj_name2id(m, type, name); }

/* The ids the controller and the task need; what the task's row says its model has must be there. */
static int find_ids(capModel *cm) {
  const mjModel *m = cm->m;
  const capTaskDef *t = cm->task;
  cm->site_eef = id_of(m, mjOBJ_SITE, "grip_site");
  int mb = t->goal_body ? id_of(m, mjOBJ_BODY, t->goal_body) : -1;
  cm->mocap_goal = mb >= 0 ? m->body_mocapid[mb] : -1;
  cm->key_home = id_of(m, mjOBJ_KEY, "home");
  cm->act_gripper = id_of(m, mjOBJ_ACTUATOR, "act_gripper");
  const char *missing = NULL;
  if (cm->site_eef < 0) missing = "site grip_site";
  if (cm->key_home < 0) missing = "keyframe home";
  if (cm->act_gripper < 0) missing = "actuator act_gripper";
  char obj[CAP_NAME_MAX + 32];
  cm->nobj = 0;
  for (int k = 0; k < CAP_MAX_OBJECTS && t->objects[k] && !missing; k++) {
    int b = id_of(m, mjOBJ_BODY, t->objects[k]);
    int j = b >= 0 && m->body_jntnum[b] > 0 ? m->body_jntadr[b] : -1;
    if (j < 0 || m->jnt_type[j] != mjJNT_FREE || m->body_geomnum[b] < 1) {
      snprintf(obj, sizeof obj, "body %s with a free joint and a geom", t->objects[k]);
      missing = obj;
      break;
    }
    cm->obj_body[k] = b;
    cm->obj_jnt[k] = j;
    cm->nobj = k + 1;
  }
  char goal[CAP_NAME_MAX + 16];
  snprintf(goal, sizeof goal, "mocap body %s", t->goal_body ? t->goal_body : "");
  if (t->goal_body && cm->mocap_goal < 0) missing = goal;
  for (int i = 0; i < CAP_ARM_DOF && !missing; i++) {
    char jn[16], an[16];
    snprintf(jn, sizeof jn, "joint%d", i + 1);
    snprintf(an, sizeof an, "act%d", i + 1);
    int j = id_of(m, mjOBJ_JOINT, jn), a = id_of(m, mjOBJ_ACTUATOR, an);
    if (j < 0 || a < 0) {
      missing = "arm joints joint1..joint7 and actuators act1..act7";
      break;
    }
    cm->arm_jnt[i] = j;
    cm->arm_qadr[i] = m->jnt_qposadr[j];
    cm->arm_dadr[i] = m->jnt_dofadr[j];
    cm->arm_act[i] = a;
    cm->arm_lo[i] = m->jnt_range[2 * j];
    cm->arm_hi[i] = m->jnt_range[2 * j + 1];
  }
  const char *fingers[2] = {"finger_left", "finger_right"};
  for (int i = 0; i < 2 && !missing; i++) {
    int j = id_of(m, mjOBJ_JOINT, fingers[i]);
    if (j < 0) {
      missing = "finger joints finger_left and finger_right";
      break;
    }
    cm->finger_qadr[i] = m->jnt_qposadr[j];
    cm->finger_dadr[i] = m->jnt_dofadr[j];
    cm->finger_body[i] = m->jnt_bodyid[j];
  }
  if (missing) return tk_error(TK_EFORMAT, "task model %s lacks %s", cm->spec.task, missing);
  cm->narm = CAP_ARM_DOF;
  /* gripper: open is what the home keyframe commands; closed is the other end of the range */
  double lo = m->actuator_ctrlrange[2 * cm->act_gripper], hi = m->actuator_ctrlrange[2 * cm->act_gripper + 1];
  double home = m->key_ctrl[cm->key_home * m->nu + cm->act_gripper];
  cm->grip_open = home;
  cm->grip_closed = fabs(home - lo) > fabs(home - hi) ? lo : hi;
  cm->finger_open = m->key_qpos[cm->key_home * m->nq + cm->finger_qadr[0]];
  int fj = mj_name2id(m, mjOBJ_JOINT, "finger_left");
  double flo = m->jnt_range[2 * fj], fhi = m->jnt_range[2 * fj + 1];
  cm->finger_closed = fabs(cm->finger_open - flo) > fabs(cm->finger_open - fhi) ? flo : fhi;
  return 0;
}

static void add_obs(capModel *cm, const char *name, capDtype t, int rank, int s0, int s1, int s2) {
  capSpec *s = &cm->spec;
  capObsSpec *o = &s->obs[s->nobs];
  snprintf(o->name, sizeof o->name, "%s", name);
  o->dtype = t;
  o->rank = rank;
  o->shape[0] = s0;
  o->shape[1] = s1;
  o->shape[2] = s2;
  if (t == CAP_F64) {
    cm->obs_off[s->nobs] = cm->nlow;
    cm->nlow += s0;
  } else {
    cm->obs_off[s->nobs] = s->nobs; /* images keep their own buffers */
  }
  s->nobs++;
}

static void build_spec(capModel *cm) {
  capSpec *s = &cm->spec;
  const mjModel *m = cm->m;
  s->control_hz = cm->opts.control_hz;
  s->physics_dt = m->opt.timestep;
  s->action_low = -1;
  s->action_high = 1;
  s->action_mode = cm->opts.action_mode;
  s->has_reward = cm->task != NULL;
  if (cm->task) snprintf(s->view_camera, sizeof s->view_camera, "%s", cm->task->view_camera);
  if (!cm->task) { /* a user's scene: its actuators, its state */
    s->action_dim = m->nu;
    add_obs(cm, "qpos", CAP_F64, 1, m->nq, 0, 0);
    add_obs(cm, "qvel", CAP_F64, 1, m->nv, 0, 0);
  } else {
    s->action_dim = cm->opts.action_mode == CAP_ACT_JOINT ? CAP_ARM_DOF + 1 : 7;
    add_obs(cm, "robot0_eef_pos", CAP_F64, 1, 3, 0, 0);
    add_obs(cm, "robot0_eef_quat", CAP_F64, 1, 4, 0, 0);
    add_obs(cm, "robot0_gripper_qpos", CAP_F64, 1, 2, 0, 0);
    add_obs(cm, "robot0_joint_pos", CAP_F64, 1, CAP_ARM_DOF, 0, 0);
    add_obs(cm, "robot0_joint_vel", CAP_F64, 1, CAP_ARM_DOF, 0, 0);
    add_obs(cm, "object", CAP_F64, 1, cm->task->object_dim, 0, 0);
  }
  for (int c = 0; c < cm->opts.ncams; c++) {
    char key[CAP_NAME_MAX + 16];
    cap_camera_key(cm->opts.cams[c].name, key, sizeof key); /* fits: names are under CAP_NAME_MAX */
    add_obs(cm, key, CAP_U8, 3, cm->opts.cams[c].height, cm->opts.cams[c].width, 3);
  }
  /* state: time, qpos, qvel, act, qacc_warmstart, mocap pos/quat, ctrl, task */
  int k = 0;
  cm->st_time = k;
  k += 1;
  cm->st_qpos = k;
  k += m->nq;
  cm->st_qvel = k;
  k += m->nv;
  cm->st_act = k;
  k += m->na;
  cm->st_warm = k;
  k += m->nv;
  cm->st_mpos = k;
  k += 3 * m->nmocap;
  cm->st_mquat = k;
  k += 4 * m->nmocap;
  cm->st_ctrl = k;
  k += m->nu;
  cm->st_task = k;
  k += CAP_TASK_STATE;
  s->state_dim = k;
}

int cap_model_load(const capOpts *o, capModel **out) {
  *out = NULL;
  capOpts dflt;
  cap_opts_default(&dflt);
  if (!o) o = &dflt;
  if (!(o->control_hz > 0 && o->control_hz <= 1000))
    return tk_error(TK_EINVAL, "control rate %g Hz is out of range (0, 1000]", o->control_hz);
  if (o->ncams < 0 || o->ncams > CAP_MAX_CAMS) return tk_error(TK_EINVAL, "at most %d cameras", CAP_MAX_CAMS);
  for (int c = 0; c < o->ncams; c++)
    if (o->cams[c].width < CAP_CAM_MIN_SIZE || o->cams[c].height < CAP_CAM_MIN_SIZE ||
        o->cams[c].width > CAP_CAM_MAX_WIDTH || o->cams[c].height > CAP_CAM_MAX_HEIGHT)
      return tk_error(TK_EINVAL, "camera %s: size %dx%d not in %dx%d..%dx%d", o->cams[c].name,
                      o->cams[c].width, o->cams[c].height, CAP_CAM_MIN_SIZE, CAP_CAM_MIN_SIZE,
                      CAP_CAM_MAX_WIDTH, CAP_CAM_MAX_HEIGHT);
  capModel *cm = calloc(1, sizeof *cm);
  if (!cm) return tk_error(TK_ENOMEM, "out of memory");
  cm->opts = *o;
  cm->opts.task = NULL;
  cm->opts.model_path = NULL;
  if (o->robot) { /* a servo-bus arm: no simulation */
    cm->opts.robot = cm->opts.robot_config = NULL;
    int rrc = cap_robot_model_init(o, cm);
    if (!rrc && !(cm->m = cap_robot_display_model()))
      rrc = tk_error_wrap(TK_EFORMAT, "robot: the arm's model");
    for (int c = 0; !rrc && c < o->ncams; c++) /* the simulated bus's cameras are the arm model's */
      if (mj_name2id(cm->m, mjOBJ_CAMERA, o->cams[c].name) < 0) {
        char have[512] = "";
        size_t off = 0;
        for (int i = 0; i < cm->m->ncam && off < sizeof have; i++)
          off += (size_t)snprintf(have + off, sizeof have - off, "%s%s", i ? ", " : "",
                                  mj_id2name(cm->m, mjOBJ_CAMERA, i));
        rrc = tk_error(TK_ENOTFOUND, "robot %s: no camera '%s' on the simulated arm (cameras: %s)", o->robot,
                       o->cams[c].name, have);
      }
    if (rrc) {
      cap_model_free(cm);
      return rrc;
    }
    *out = cm;
    return 0;
  }
  char err[1024] = "";
  int rc = 0;
  mju_user_warning = quiet_warning;
  mju_user_error = fatal_error;
  if (o->model_path) {
    cm->task = NULL;
    snprintf(cm->spec.task, sizeof cm->spec.task, "free");
    cap_mujoco_lock();
    cm->m = mj_loadXML(o->model_path, NULL, err, sizeof err);
    if (cm->m) cm->xml = save_xml(cm->m);
    cap_mujoco_unlock();
    if (!cm->m) {
      rc = tk_error(TK_EFORMAT, "%s: MuJoCo cannot load it: %s", o->model_path,
                    err[0] ? err : "unknown error");
      goto fail;
    }
    if (cm->m->nu < 1) {
      rc = tk_error(TK_EFORMAT, "%s: the model has no actuators to drive", o->model_path);
      goto fail;
    }
    if (cm->m->nu > CAP_MAX_ACT) {
      rc = tk_error(TK_EFORMAT, "%s: %d actuators (at most %d)", o->model_path, cm->m->nu, CAP_MAX_ACT);
      goto fail;
    }
    cm->site_eef = cm->mocap_goal = cm->act_gripper = -1;
    cm->key_home = -1;
    cm->cfg.horizon = o->horizon > 0 ? o->horizon : 1000;
  } else {
    const char *t = o->task ? o->task : CAP_DEFAULT_TASK;
    const capTaskDef *td = cap_task_find(t);
    if (!td) {
      rc = tk_error(TK_ENOTFOUND, "unknown task '%s' (known tasks: %s)", t, cap_task_names());
      goto fail;
    }
    cm->task = td;
    snprintf(cm->spec.task, sizeof cm->spec.task, "%s", td->name);
    const char *file = td->model;
    cap_mujoco_lock();
    cm->m = load_vfs(cap_embedded_models, cap_n_embedded_models, file, err, sizeof err);
    if (cm->m) cm->xml = save_xml(cm->m);
    cap_mujoco_unlock();
    if (!cm->m) {
      rc = tk_error(TK_EFORMAT, "built-in model %s: MuJoCo cannot load it: %s", file, err);
      goto fail;
    }
    if ((rc = find_ids(cm))) goto fail;
    cm->cfg.horizon = o->horizon > 0 ? o->horizon : td->horizon;
    /* geometry from the model: table top height, the first object's size */
    int tg = mj_name2id(cm->m, mjOBJ_GEOM, "table_top");
    if (tg < 0) {
      rc = tk_error(TK_EFORMAT, "built-in model %s lacks geom table_top", file);
      goto fail;
    }
    cm->cfg.table_z = cm->m->geom_pos[3 * tg + 2] + cm->m->geom_size[3 * tg + 2];
    if (cm->nobj) cm->cfg.obj_half = cm->m->geom_size[3 * cm->m->body_geomadr[cm->obj_body[0]]];
    /* where objects and goals are placed: the task's box (in front of the arm, within its reach) */
    cm->cfg.x_lo = td->place_lo[0];
    cm->cfg.x_hi = td->place_hi[0];
    cm->cfg.y_lo = td->place_lo[1];
    cm->cfg.y_hi = td->place_hi[1];
    for (int i = 0; i < CAP_ARM_DOF; i++)
      cm->arm_home[i] = cm->m->key_qpos[cm->key_home * cm->m->nq + cm->arm_qadr[i]];
  }
  for (int c = 0; c < o->ncams; c++) {
    cm->cam_id[c] = mj_name2id(cm->m, mjOBJ_CAMERA, o->cams[c].name);
    if (cm->cam_id[c] < 0) {
      char have[512] = "";
      size_t off = 0;
      for (int i = 0; i < cm->m->ncam && off < sizeof have; i++)
        off += (size_t)snprintf(have + off, sizeof have - off, "%s%s", i ? ", " : "",
                                mj_id2name(cm->m, mjOBJ_CAMERA, i));
      rc = tk_error(TK_ENOTFOUND, "no camera '%s' in the model (cameras: %s)", o->cams[c].name,
                    cm->m->ncam ? have : "none");
      goto fail;
    }
  }
  double period = 1.0 / o->control_hz;
  cm->nsub = (int)(period / cm->m->opt.timestep + 0.5);
  if (cm->nsub < 1) cm->nsub = 1;
  cm->spec.horizon = cm->cfg.horizon;
  build_spec(cm);
  *out = cm;
  return 0;
fail:
  cap_model_free(cm);
  return rc;
}

void cap_model_free(capModel *cm) {
  if (!cm) return;
  if (cm->m) mj_deleteModel(cm->m);
  free(cm->xml);
  free(cm->robot);
  free(cm);
}

const capSpec *cap_spec(const capModel *m) { return &m->spec; }
const char *cap_model_xml(const capModel *m) { return m->xml ? m->xml : ""; }

const void *cap_model_mujoco(const capModel *m) { return m->m; }
