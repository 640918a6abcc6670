/* Scripted operators: with noise 0 they succeed on at least 95% of 50 seeds on every task;
 * with noise 0.5 clearly less often, but not never. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>

#include "cap.h"
#include "tk.h"

static int success_count(const char *task, double noise, int episodes) {
  capOpts o;
  cap_opts_default(&o);
  o.task = task;
  capModel *m;
  cr_assert_eq(cap_model_load(&o, &m), 0, "%s", tk_errmsg());
  capEnv *e;
  cap_env_make(m, &e);
  capExpert *x;
  cr_assert_eq(cap_expert_make(m, noise, 1, &x), 0, "%s", tk_errmsg());
  const capSpec *s = cap_spec(m);
  int ok = 0;
  for (int ep = 0; ep < episodes; ep++) {
    capObs ob;
    cap_env_reset(e, 1000 + (uint64_t)ep, &ob); /* held-out seeds, not the ones tuned on */
    cap_expert_reset(x, (uint64_t)ep);
    int held = 0;
    for (int t = 0; t < s->horizon; t++) {
      double a[8];
      capStep st;
      cap_expert_act(x, e, a);
      cr_assert_eq(cap_env_step(e, a, &st), 0, "%s", tk_errmsg());
      cr_assert_eq(st.flags & CAP_FLAG_UNSTABLE, 0, "%s: the simulation diverged (seed %d)", task, 1000 + ep);
      held = st.success ? held + 1 : 0;
      if (held >= 5) {
        ok++;
        break;
      }
    }
  }
  cap_expert_free(x);
  cap_env_free(e);
  cap_model_free(m);
  return ok;
}

static void check(const char *task) {
  int clean = success_count(task, 0.0, 50), noisy = success_count(task, 0.5, 50);
  printf("%s: noise 0 %d/50, noise 0.5 %d/50\n", task, clean, noisy);
  cr_assert_geq(clean, 48, "%s: noise 0 succeeded %d/50 (need 95%%)", task, clean);
  cr_assert_lt(noisy, clean - 3, "%s: noise 0.5 is not clearly worse (%d vs %d)", task, noisy, clean);
  cr_assert_gt(noisy, 10, "%s: noise 0.5 almost never succeeds (%d)", task, noisy);
}

Test(expert, reach, .timeout = 600) { check("reach"); }
Test(expert, push, .timeout = 600) { check("push"); }
Test(expert, lift, .timeout = 600) { check("lift"); }
Test(expert, stack, .timeout = 600) { check("stack"); }
Test(expert, pick_place, .timeout = 600) { check("pick_place"); }
Test(expert, nut_assembly, .timeout = 600) { check("nut_assembly"); }

Test(expert, refusals) {
  capOpts o;
  cap_opts_default(&o);
  o.action_mode = CAP_ACT_JOINT;
  capModel *m;
  cr_assert_eq(cap_model_load(&o, &m), 0);
  capExpert *x;
  cr_assert_eq(cap_expert_make(m, 0, 1, &x), TK_EINVAL);
  cap_model_free(m);
  cap_opts_default(&o);
  cr_assert_eq(cap_model_load(&o, &m), 0);
  cr_assert_eq(cap_expert_make(m, 2.0, 1, &x), TK_EINVAL);
  cap_model_free(m);
}

/* The pad mapping: dead zone, sensitivity, sign, and the latched gripper. */
Test(pad, mapping) {
  capPadMap m;
  cap_pad_map_default(&m);
  capPadState p = {{0}, 0};
  double g = -1, a[7];
  p.axis[CAP_AX_LX] = 0.05; /* inside the dead zone */
  p.axis[CAP_AX_LY] = 1.0;  /* full up: away from the camera, -x */
  p.axis[CAP_AX_RY] = -0.55;
  p.axis[CAP_AX_RX] = NAN; /* a broken device reads as centred */
  p.buttons = CAP_BTN_RB;
  cap_pad_to_action(&m, &p, &g, a);
  cr_assert_eq(a[1], 0);
  cr_assert_float_eq(a[0], -1.0, 1e-12);
  cr_assert_float_eq(a[2], -0.5, 1e-12);
  cr_assert_eq(a[5], 0);
  cr_assert_eq(a[6], 1);
  p.buttons = 0; /* released: the gripper stays closed */
  cap_pad_to_action(&m, &p, &g, a);
  cr_assert_eq(a[6], 1);
  p.buttons = CAP_BTN_LB;
  cap_pad_to_action(&m, &p, &g, a);
  cr_assert_eq(a[6], -1);
}

/* The scripted operator through the pad: what the mapping makes of its sticks is what it
 * meant (on the axes the pad has), and it still does the job, pressing A when it does. */
Test(pad, expert_through_the_pad, .timeout = 600) {
  capOpts o;
  cap_opts_default(&o);
  o.task = "lift";
  capModel *m;
  cr_assert_eq(cap_model_load(&o, &m), 0);
  capEnv *e;
  cap_env_make(m, &e);
  capExpert *x, *y;
  cap_expert_make(m, 0.0, 1, &x);
  cap_expert_make(m, 0.0, 1, &y);
  capPadMap map;
  cap_pad_map_default(&map);
  int ok = 0, pressed_a = 0;
  for (int ep = 0; ep < 20; ep++) {
    capObs ob;
    cap_env_reset(e, 2000 + (uint64_t)ep, &ob);
    cap_expert_reset(x, (uint64_t)ep);
    cap_expert_reset(y, (uint64_t)ep);
    double g = -1;
    int success = 0;
    for (int t = 0; t < cap_spec(m)->horizon; t++) {
      capPadState p;
      double want[8], a[7];
      cap_expert_act(y, e, want); /* the same operator, direct: what it means */
      cr_assert_eq(cap_expert_pad(x, e, &map, &p), 0);
      cap_pad_to_action(&map, &p, &g, a);
      for (int i = 0; i < 3; i++)
        cr_assert_float_eq(a[i], want[i], 1e-9, "step %d axis %d", t, i);
      cr_assert_float_eq(a[5], want[5], 1e-9);
      cr_assert_eq(a[6], want[6]);
      capStep st;
      cap_env_step(e, a, &st);
      success = st.success;
      if (p.buttons & (CAP_BTN_A | CAP_BTN_B)) {
        pressed_a += (p.buttons & CAP_BTN_A) != 0;
        break;
      }
    }
    ok += success;
  }
  printf("lift through the pad: %d/20 successes, A pressed %d times\n", ok, pressed_a);
  cr_assert_geq(ok, 18);
  cr_assert_eq(pressed_a, ok, "A is pressed exactly when the task is done");
  cap_expert_free(x);
  cap_expert_free(y);
  cap_env_free(e);
  cap_model_free(m);
}
