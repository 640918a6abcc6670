/* Scripted operators: with noise 0 they succeed on at least 95% of 50 seeds on every task;
 * with noise 0.5 clearly less often, but not never. */
#include <criterion/criterion.h>
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
