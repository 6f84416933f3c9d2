"""Training: the loop, optimisers and schedules, distributed helpers and run logging.

Example:
    >>> from svde.training import train, TrainingError
    >>> callable(train)
    True
"""

from svde.training.optim import OPTIMIZERS, SCHEDULES, build_optimizer, build_scheduler
from svde.training.trainer import RESUME_SAFE, TrainingError, resume_config, train

__all__ = ["OPTIMIZERS", "RESUME_SAFE", "SCHEDULES", "TrainingError", "build_optimizer", "build_scheduler",
           "resume_config", "train"]
