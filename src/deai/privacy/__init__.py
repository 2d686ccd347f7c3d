"""deai.privacy: the privacy half of the trust plane.

* ``accounting``: ``PrivacyAccountant`` (Opacus RDP / PRV), ``PrivacyBudget``,
  ``calibrate_noise``; a budget is checked before every charge.
* ``dp_fedavg``: user-level DP-FedAvg (clip, noise where the threat model says), adaptive
  clipping (Andrew et al. 2021).
* ``dp_sgd``: sample-level DP-SGD for local training via Opacus.
* ``secagg``: secure aggregation (Bonawitz et al. 2017) and SecAgg+ (Bell et al. 2020).
* ``groupwise``: secure sums in random groups, then a robust rule over group means.
* ``measure``: membership inference AUC and DLG gradient inversion as measurements.
* ``text`` and ``cli``: PII scrubbing and near-duplicate removal (``deai data scrub``).
"""
