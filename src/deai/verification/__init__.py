"""deai.verification: how we know outsourced work was done right.

Inference runs in hidden check groups on the ledger's Tasks contract (:mod:`.chain`): a
worker commits before it can learn whether its task is checked, the check decision is
derived from the requester's committed key and the worker's own commitment
(:func:`deai.ledger.tasks_types.sampled`), results are compared within an execution profile
(:mod:`.profiles`) by a whole-output lane fingerprint (:mod:`.fingerprint`), split or
contested verdicts go to a bonded jury. Training is audited by Proof-of-Learning replays of
secretly sampled segments (:mod:`.pol`); :mod:`.economics` sizes the bond from measured
catch rates and the cartel share. :mod:`.protocol` and :mod:`.commit_reveal` are the
in-memory reference protocol. See docs/verification.md.
"""
