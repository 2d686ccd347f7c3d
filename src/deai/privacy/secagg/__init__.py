"""Secure aggregation (Bonawitz et al., CCS 2017) and SecAgg+ (Bell et al., CCS 2020),
malicious-server variant (signed keys and a consistency round).

The validator learns only the sum of one agreed set of surviving clients' fixed-point
inputs, even when it lies. See ``protocol`` for the threat model, ``mitm`` for the
key-swapping attack it defeats, ``fixedpoint`` for the overflow bound, ``client`` and
``server`` for the state machines and ``inprocess`` for the in-memory driver.
"""

from deai.privacy.secagg.client import SecAggClient
from deai.privacy.secagg.fixedpoint import FixedPoint, modulus_bits, pack, packed_size, unpack
from deai.privacy.secagg.inprocess import DropoutPlan, Identities, SecAggRun, run_secagg_inprocess
from deai.privacy.secagg.mitm import KeySwapMITM
from deai.privacy.secagg.protocol import SecAggAborted, SecAggConfig, Signer, Stage, Verifier
from deai.privacy.secagg.server import SecAggOutput, SecAggServer

__all__ = [
    "DropoutPlan",
    "FixedPoint",
    "Identities",
    "KeySwapMITM",
    "SecAggAborted",
    "SecAggClient",
    "SecAggConfig",
    "SecAggOutput",
    "SecAggRun",
    "SecAggServer",
    "Signer",
    "Stage",
    "Verifier",
    "modulus_bits",
    "pack",
    "packed_size",
    "run_secagg_inprocess",
    "unpack",
]
