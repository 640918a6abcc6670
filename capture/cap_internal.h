/* capture/cap_internal.h -- internals shared by the capture module's files. */
#ifndef CAP_INTERNAL_H
#define CAP_INTERNAL_H

#include <mujoco/mujoco.h>

#include "cap.h"
#include "tk.h"

#define CAP_ARM_DOF 7
#define CAP_MAX_OBJECTS 4 /* free bodies a task's model may name (capTaskDef.objects) */

struct capTaskDef; /* a built-in task's row (cap_task.h) */

/* Task geometry (world frame, meters), from the task's row and its model. */
typedef struct {
  double table_z;  /* table top height */
  double obj_half; /* the first object's first geom, size[0] (a box: half side; a cylinder: radius) */
  double x_lo, x_hi, y_lo, y_hi; /* placement box for objects and goals on the table */
  int horizon;
} capTaskCfg;

struct capModel {
  mjModel *m;
  const struct capTaskDef *task; /* the built-in task's row; NULL for a user's scene or a robot */
  capTaskCfg cfg;
  capOpts opts;
  capSpec spec;
  char *xml; /* the flattened MJCF (mj_saveLastXML) */
  int nsub;  /* physics steps per control step */
  /* ids (-1 when absent) */
  int site_eef, mocap_goal;                                /* mocap_goal: mocap index of the goal body */
  int nobj;                                                /* the task's objects (capTaskDef.objects) */
  int obj_body[CAP_MAX_OBJECTS], obj_jnt[CAP_MAX_OBJECTS]; /* their bodies and free joints */
  int arm_jnt[CAP_ARM_DOF], arm_qadr[CAP_ARM_DOF], arm_dadr[CAP_ARM_DOF], arm_act[CAP_ARM_DOF];
  int finger_qadr[2], finger_dadr[2], finger_body[2], act_gripper;
  double arm_lo[CAP_ARM_DOF], arm_hi[CAP_ARM_DOF];
  double arm_home[CAP_ARM_DOF];      /* home keyframe joint positions (null-space rest pose) */
  double grip_open, grip_closed;     /* gripper actuator ctrl for open / closed */
  double finger_open, finger_closed; /* finger joint position when open / fully closed */
  int key_home;
  int narm; /* 7 for tasks, 0 for a free scene */
  int cam_id[CAP_MAX_CAMS];
  /* observation slots */
  int obs_off[CAP_MAX_OBS]; /* offset into the env's double buffer (low-dim) or image index */
  int nlow;                 /* doubles of low-dim observation */
  /* state layout */
  int st_time, st_qpos, st_qvel, st_act, st_warm, st_mpos, st_mquat, st_ctrl, st_task;
  struct capRobotCfg *robot; /* a servo-bus robot (cap_robot.c): no MuJoCo model then */
};

/* Task state carried in the flat state vector after the simulator part. */
#define CAP_TASK_STATE 12 /* desired eef pos (3), desired eef quat (4), goal (3), steps, resting z */

struct capRender;

struct capEnv {
  const capModel *cm;
  mjData *d;
  mjData *scratch; /* for IK: forward kinematics of candidate joint targets */
  tkRng rng;
  int64_t steps;
  int64_t warnings;
  double des_pos[3], des_quat[4]; /* the controller's desired end-effector pose */
  double goal[3];
  double rest_z; /* the first object's resting height at reset (m) */
  double *low;   /* nlow doubles */
  uint8_t *img[CAP_MAX_CAMS];
  struct capRender *render;
  int unstable;
  struct capRobot *robot;      /* a servo-bus robot (cap_robot.c) */
  int robot_qadr[CAP_MAX_ACT]; /* each robot joint's qpos address in the arm model (-1: no such joint) */
};

/* The servo arm's model (capture/models/servo_arm.xml), posed from a robot's joint positions: the
 * console's view, and the simulated bus's rendered cameras (cap_model.c). */
mjModel *cap_robot_display_model(void);

/* The task's success criterion holds now. */
int cap_env_success(const capEnv *e);

/* mj_loadXML and mj_saveLastXML share global state: every load goes through this lock. */
void cap_mujoco_lock(void);
void cap_mujoco_unlock(void);

/* Embedded model files (generated from the XML files in capture/models at build time). */
typedef struct {
  const char *name;
  const char *text;
} capEmbeddedFile;
extern const capEmbeddedFile cap_embedded_models[];
extern const int cap_n_embedded_models;

#endif
