/* capture/cap_robot.h -- internals of the servo-bus robot behind cap_env (cap_robot.c): the
 * configuration (joints, calibration, limits, safety) shared by the follower and the leader. */
#ifndef CAP_ROBOT_H
#define CAP_ROBOT_H

#include "cap.h"
#include "srv.h"

#define CAP_ROBOT_TICKS_PER_RAD (4096.0 / (2.0 * 3.14159265358979323846)) /* both families */

typedef struct {
  char name[32];
  int id;           /* bus id */
  double offset;    /* ticks at 0 rad */
  double direction; /* +1 or -1: the sign of ticks per radian */
  double lo, hi;    /* joint limits, rad (the follower's; a leader's are not used) */
} capJoint;

typedef struct capRobotCfg {
  char name[CAP_NAME_MAX]; /* "koch_follower", ...: the dataset's env name */
  char config[4096];       /* the JSON it came from ("" built-in); PATH_MAX: any path open() takes */
  char port[256];          /* device path ("" for the simulated bus) */
  int simbus;              /* 1: a simulated chain served on a pty by this process */
  srvKind kind;
  int baud;
  double control_hz;
  int n;
  capJoint j[CAP_MAX_ACT];
  double max_step;      /* rad per control step, per joint */
  double watchdog_s;    /* hold position when no command came for this long */
  double timeout_s;     /* per status packet (0: the bus's own, capped to a third of the period) */
  int read_retries;     /* extra attempts of a failed read within the step */
  int fault_torque_off; /* on a fault: 1 torque off, 0 hold position */
  int exit_torque_off;  /* when the environment is freed: 1 torque off, 0 hold */
} capRobotCfg;

/* "dxl:/dev/ttyUSB0", "fts:/dev/ttyUSB0", "simbus", "simbus:dxl", "simbus:fts" */
int cap_robot_parse_port(const char *spec, capRobotCfg *c);
/* Read the JSON (NULL: the simulated bus's built-in 6-joint arm). leader: only ids and
 * calibration are needed. Errors name the file and the field. */
int cap_robot_cfg_load(const char *spec, const char *path, int leader, capRobotCfg *c);

/* capModel / capEnv hooks (cap_model.c, cap_env.c dispatch here when cm->robot is set) */
struct capModel;
struct capEnv;
int cap_robot_model_init(const capOpts *o, struct capModel *cm);
int cap_robot_env_make(struct capEnv *e);
void cap_robot_env_free(struct capEnv *e);
int cap_robot_reset(struct capEnv *e, capObs *obs);
int cap_robot_step(struct capEnv *e, const double *action, capStep *out);
int cap_robot_get_state(const struct capEnv *e, double *s);
int cap_robot_observe(struct capEnv *e, capObs *obs);

#endif
