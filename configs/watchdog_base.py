"""The `train.watchdog` section every training config has: what the loop does when a run
goes wrong (stylegan_jax/train/watchdog.py).

Conservative by default: it acts on what is certainly broken (NaN / Inf, a loss far past
anything a healthy GAN reports, a metric twice as bad as the run's best twice in a row),
rolls back at most three times, and keeps the learning rates unless told otherwise.
"""

import ml_collections


def watchdog_section() -> ml_collections.ConfigDict:
    w = ml_collections.ConfigDict()
    w.enabled = True  # False: a non-finite loss or state stops the run (as before)
    w.max_rollbacks = 3  # then the run stops, the last good checkpoint kept
    w.loss_bound = 1000.0  # |G/loss|, |D/loss|, |G/reg| or |D/reg| above this: roll back
    w.metric_factor = 2.0  # the evaluated metric worse than its best by this factor ...
    w.metric_patience = 2  # ... this many evaluations in a row: back to the best checkpoint
    w.lr_scale = 1.0  # learning rates times this after each rollback (1: unchanged)
    # ADA leak alarms (a warning on the tick line and in the stats, never a stop).
    w.ada_p_level = 0.8  # the ADA paper's limit: below ~0.8 augmentations rarely leak
    w.ada_p_kimg = 10.0  # p at or above the level for this many kimg raises the alarm
    w.leak_min_p = 0.3  # the leak probe alarms only while augmenting at least this much
    w.leak_rotation = 0.25  # fakes' share turned 90/180/270 degrees above the reals' share
    w.leak_colour = 1.5  # fakes' mean brightness/contrast/saturation off by this many
    #                      of the reals' standard deviations
    # A fault to prove the watchdog on a real run: from this kimg the learning rates are
    # multiplied by fault_lr_scale until the first rollback after it (0: no fault).
    w.fault_kimg = 0.0
    w.fault_lr_scale = 1e4
    return w
