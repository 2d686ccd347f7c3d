"""deai.verification: how we know outsourced work was done right.

Secret sampling (:mod:`.sampling`) picks which tasks are cross-checked; checked inference is
compared by commit-reveal (:mod:`.commit_reveal`) with exact hashes or tolerant TOPLOC-style
fingerprints (:mod:`.fingerprint`) over deterministic execution (:mod:`.determinism`);
training is audited by Proof-of-Learning replays (:mod:`.pol`); :mod:`.economics` sizes the
stake that makes every cheating strategy unprofitable; :mod:`.protocol` runs one task over any
:class:`~deai.verification.commit_reveal.TaskSettlement`. See docs/verification.md.
"""
