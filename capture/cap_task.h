/* capture/cap_task.h -- the built-in tasks as rows of one table (docs/architecture.md, convention 10).
 *
 * Everything that makes a task is in its own file, capture/tasks/NAME.c: its MJCF (by name, under
 * capture/models/), what the model must contain, the reset (object and goal placement from the
 * episode's seed), the "object" observation, the dense reward, the success criterion, the default
 * horizon, the camera the operator watches, and the scripted operator's hands for it. That file
 * defines one `const capTaskDef cap_task_NAME`; capture/cap_tasks.c lists the rows. The
 * environment (cap_env.c), the model loader (cap_model.c) and the scripted operator (cap_expert.c)
 * ask the row; nothing outside a task's file knows the task by name.
 *
 * Adding a task: docs/architecture.md. */
#ifndef CAP_TASK_H
#define CAP_TASK_H

#include "cap_internal.h"

/* The scripted operator (cap_expert.c) as a task's hands see it. The traits below are drawn at
 * every reset for every task, in one order (so a seed means the same person on every task); each
 * task decides how they show. */
struct capExpert {
  const capModel *cm;
  double noise; /* 0 clean .. 1 clumsy */
  tkRng rng;
  int ph;       /* the task's own phase (0 at reset; tasks without phases ignore it) */
  int wait;     /* steps spent in the current phase (incremented before the task acts) */
  int hesitate; /* steps of doing nothing left */
  int attempts; /* grasp attempts so far (the task counts them) */
  double
      grasp_off[2]; /* a wrong first grasp: this xy offset (m) on the first attempt, where the task grasps */
  double gain;      /* overshoot: a gain above 1 for this episode */
  int gives_up_at;  /* step at which this operator gives up (0: never) */
  int misjudge;     /* this episode the operator misjudges the target (depth, position, height) */
  double off[3];    /* ... by this much (m): the goal moves by it in the task's misjudge_dims coordinates */
  int steps;
  int held; /* steps the task's success has held */
};

/* One built-in task. Pointers into capEnv / capModel internals (cap_internal.h) are fine here: a
 * task file is part of capture/. */
typedef struct capTaskDef {
  const char *name;        /* --task NAME; the dataset's env name */
  const char *model;       /* its MJCF among the embedded files (capture/models/, includes resolve there) */
  int horizon;             /* default episode length, control steps (capOpts.horizon overrides) */
  const char *view_camera; /* the camera the operator watches (the default pad mapping assumes it) */
  /* what the model must have besides the arm, the table and the home keyframe */
  /* bodies with a free joint (cm->obj_body[k], cm->obj_jnt[k], in this order; unused slots NULL). The
   * first is "the object": cap_env_object_pos, e->rest_z, cfg.obj_half and the operator's `cube` */
  const char *objects[CAP_MAX_OBJECTS];
  const char *goal_body; /* a mocap body that shows the goal (cm->mocap_goal), NULL: none */
  /* where objects and goals are placed (m, world x and y); the end effector's workspace is this box
   * widened by 0.15 m, from the table top + 5 mm to 0.6 m above it */
  double place_lo[2], place_hi[2];
  int object_dim; /* doubles in the "object" observation */
  /* reset: place objects and the goal (e->goal; the goal's mocap body follows it) drawing from e->rng,
   * seeded with the episode's seed. The arm is at its home keyframe; kinematics are not yet current. */
  void (*reset)(capEnv *e);
  /* the "object" observation (object_dim doubles) for the current state; eef: grip_site (world) */
  void (*object_obs)(const capEnv *e, const double eef[3], double *ob);
  int (*success)(const capEnv *e);
  double (*reward)(const capEnv *e); /* dense, shaped, below 1 (success and sparse: 1/0, cap_env.c) */
  /* the scripted operator: a (action_dim, EEF mode) comes zeroed with the gripper open (-1); eef, the
   * goal (already misjudged in misjudge_dims coordinates), the first object (zeros without one). Noise that
   * is not the task's (hesitation, shaky hands, giving up) is added by cap_expert.c. NULL: no operator. */
  void (*expert)(capExpert *x, const capEnv *e, const double eef[3], const double goal[3],
                 const double cube[3], double *a);
  double (*expert_idle_grip)(const capExpert *x); /* gripper command while hesitating (NULL: open, -1) */
  int misjudge_dims; /* goal coordinates a misjudging operator gets wrong (0: its expert handles misjudge) */
} capTaskDef;

/* The table (cap_tasks.c): the row named name, or NULL. */
const capTaskDef *cap_task_find(const char *name);

/* ---- shared by task files ---- */
static inline double cap_clampd(double x, double lo, double hi) { return x < lo ? lo : x > hi ? hi : x; }
double cap_dist3(const double *a, const double *b);
/* A cube on the table: x, y in the task's placement box, a random yaw within +-45 deg (e->rng). */
void cap_task_place_cube(capEnv *e);
/* Object k (capTaskDef.objects) at x, y turned by yaw (rad) about z, at its keyframe height. */
void cap_task_set_object(capEnv *e, int k, double x, double y, double yaw);
/* Object k's position (3, world) and yaw about z (rad). */
const double *cap_task_object_pos(const capEnv *e, int k);
double cap_task_object_yaw(const capEnv *e, int k);
/* Bodies b1 and b2 (ids) touch: a contact between their geoms in the current state. */
int cap_task_bodies_touch(const capEnv *e, int b1, int b2);
/* A finger touches object k. */
int cap_task_finger_touches(const capEnv *e, int k);
/* Object k's linear speed (m/s, from its free joint's velocity). */
double cap_task_object_speed(const capEnv *e, int k);
/* Scripted-operator motions (cap_expert.c). toward: the translation action toward p, proportional
 * (gain k per 5 cm, times the operator's overshoot gain), saturating at full stick. keep_down: the
 * rotation action (a[3], a[4]) that keeps the gripper pointing straight down. yaw_error: the yaw of
 * object k relative to the gripper, modulo 90 degrees. dist: Euclidean distance over n coordinates. */
void cap_expert_toward(capExpert *x, const double *eef, const double *p, double k, double *a);
void cap_expert_keep_down(const capEnv *e, double *a);
double cap_expert_yaw_error(const capEnv *e, int k);
double cap_expert_dist(const double *a, const double *b, int n);
/* A grasp that failed (the object did not come along, slipped out, or did not end where it should): count
 * the attempt and start again from the approach, phase 0 of every task. */
void cap_expert_try_again(capExpert *x);
/* The last phase of a pick and place: straight up to height z, no sideways motion; after 20 steps an
 * object that is not where the task wants it (!done) is picked up again. */
void cap_expert_retreat(capExpert *x, const double *eef, double z, int done, double *a);

#endif
