"""Gang placement and Ray Train glue; checkpoint and resume after preemption.

- :mod:`.launcher`: the Ray job driver of a train-app run (TorchTrainer on the gang).
- :mod:`.entrypoint`: the Ray job driver of an entry-point run (reserves the gang, runs CMD).
- :mod:`.gang`: ScalingConfig/RunConfig of a gang; ``current_placement_group()`` for programs.
- :mod:`.worker`: the wrapper every Train worker runs first.
- :mod:`.history`: MTTR / MTBI from a job's interruptions.
"""

from .history import Reliability, record_recovery, reliability

__all__ = ["Reliability", "record_recovery", "reliability"]
