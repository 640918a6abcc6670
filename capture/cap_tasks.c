/* capture/cap_tasks.c -- the table of built-in tasks, and what their files share. Each row is
 * defined in its task's file (capture/tasks/NAME.c); the list of names comes from task_names in
 * capture/meson.build (CAP_TASK_LIST), the only place that names them. */
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "cap_task.h"

/* The built-in tasks, in the order --help and error messages list them. */
#ifndef CAP_TASK_LIST
#error "CAP_TASK_LIST(X) comes from capture/meson.build's task_names"
#endif
#define CAP_TASKS(X) CAP_TASK_LIST(X)

#define CAP_TASK_EXTERN(n) extern const capTaskDef cap_task_##n;
CAP_TASKS(CAP_TASK_EXTERN)
#define CAP_TASK_ROW(n) &cap_task_##n,
static const capTaskDef *const tasks[] = {CAP_TASKS(CAP_TASK_ROW)};

const capTaskDef *cap_task_find(const char *name) {
  for (size_t i = 0; name && i < TK_ARRAY_LEN(tasks); i++)
    if (!strcmp(name, tasks[i]->name)) return tasks[i];
  return NULL;
}

int cap_task_known(const char *name) { return cap_task_find(name) != NULL; }

static char names[512];
static pthread_once_t names_once = PTHREAD_ONCE_INIT;
static void make_names(void) {
  size_t k = 0;
  for (size_t i = 0; i < TK_ARRAY_LEN(tasks) && k < sizeof names; i++)
    k += (size_t)snprintf(names + k, sizeof names - k, "%s%s", i ? ", " : "", tasks[i]->name);
}

const char *cap_task_names(void) {
  pthread_once(&names_once, make_names);
  return names;
}

/* ---- shared by task files ---- */
double cap_dist3(const double *a, const double *b) {
  double dx = a[0] - b[0], dy = a[1] - b[1], dz = a[2] - b[2];
  return sqrt(dx * dx + dy * dy + dz * dz);
}

void cap_task_set_object(capEnv *e, int k, double x, double y, double yaw) {
  const capModel *cm = e->cm;
  double *q = e->d->qpos + cm->m->jnt_qposadr[cm->obj_jnt[k]];
  q[0] = x;
  q[1] = y;
  q[3] = cos(yaw / 2);
  q[4] = 0;
  q[5] = 0;
  q[6] = sin(yaw / 2);
}

void cap_task_place_cube(capEnv *e) {
  const capTaskCfg *c = &e->cm->cfg;
  double x = tk_rng_range(&e->rng, c->x_lo, c->x_hi);
  double y = tk_rng_range(&e->rng, c->y_lo, c->y_hi);
  /* a random yaw: the grasp must adapt */
  double yaw = tk_rng_range(&e->rng, -M_PI / 4, M_PI / 4);
  cap_task_set_object(e, 0, x, y, yaw);
}

const double *cap_task_object_pos(const capEnv *e, int k) { return e->d->xpos + 3 * e->cm->obj_body[k]; }

double cap_task_object_yaw(const capEnv *e, int k) {
  const double *q = e->d->xquat + 4 * e->cm->obj_body[k];
  return atan2(2 * (q[0] * q[3] + q[1] * q[2]), 1 - 2 * (q[2] * q[2] + q[3] * q[3]));
}

int cap_task_bodies_touch(const capEnv *e, int b1, int b2) {
  const mjModel *m = e->cm->m;
  const mjData *d = e->d;
  for (int i = 0; i < d->ncon; i++) {
    int g1 = m->geom_bodyid[d->contact[i].geom1], g2 = m->geom_bodyid[d->contact[i].geom2];
    if ((g1 == b1 && g2 == b2) || (g1 == b2 && g2 == b1)) return 1;
  }
  return 0;
}

int cap_task_finger_touches(const capEnv *e, int k) {
  const capModel *cm = e->cm;
  return cap_task_bodies_touch(e, cm->obj_body[k], cm->finger_body[0]) ||
         cap_task_bodies_touch(e, cm->obj_body[k], cm->finger_body[1]);
}

double cap_task_object_speed(const capEnv *e, int k) {
  const double *v = e->d->qvel + e->cm->m->jnt_dofadr[e->cm->obj_jnt[k]];
  return sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]);
}
