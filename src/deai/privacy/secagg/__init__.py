"""Secure aggregation (Bonawitz et al., CCS 2017) and SecAgg+ (Bell et al., CCS 2020).

The validator learns only the sum of the surviving clients' fixed-point inputs. See
``protocol`` for the threat model, ``fixedpoint`` for the overflow bound, ``client`` and
``server`` for the state machines and ``inprocess`` for the in-memory driver.
"""

from deai.privacy.secagg.client import SecAggClient
from deai.privacy.secagg.fixedpoint import FixedPoint, modulus_bits, pack, packed_size, unpack
from deai.privacy.secagg.inprocess import DropoutPlan, SecAggRun, run_secagg_inprocess
from deai.privacy.secagg.protocol import SecAggAborted, SecAggConfig, Stage
from deai.privacy.secagg.server import SecAggOutput, SecAggServer

__all__ = [
    "DropoutPlan",
    "FixedPoint",
    "SecAggAborted",
    "SecAggClient",
    "SecAggConfig",
    "SecAggOutput",
    "SecAggRun",
    "SecAggServer",
    "Stage",
    "modulus_bits",
    "pack",
    "packed_size",
    "run_secagg_inprocess",
    "unpack",
]
