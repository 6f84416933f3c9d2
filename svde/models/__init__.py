"""Models: the paper's eight LRN depth networks and their checkpoints.

Example:
    >>> from svde.models import build_model, MODELS
    >>> sorted(MODELS)[:2]
    ['b0_lrn4', 'b1_lrn4']
"""

from svde.models.checkpoint import (
    CheckpointError,
    convert_official,
    load_model,
    load_official_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from svde.models.encoders import ENCODERS, build_encoder
from svde.models.fast import InferenceModel, fold_batchnorm, for_inference, optimize_for_inference
from svde.models.model import DepthModel
from svde.models.prediction import DOMAINS, convert_domain, predict
from svde.models.pretrained import PretrainedWeightsUnavailable
from svde.models.registry import MODELS, build_model
from svde.models.released import RELEASED, ReleasedWeightsInvalid, load_released, released_path
from svde.models.sharing import from_pretrained, save_pretrained

__all__ = [
    "CheckpointError",
    "DOMAINS",
    "DepthModel",
    "ENCODERS",
    "InferenceModel",
    "MODELS",
    "PretrainedWeightsUnavailable",
    "RELEASED",
    "ReleasedWeightsInvalid",
    "build_encoder",
    "build_model",
    "convert_domain",
    "convert_official",
    "fold_batchnorm",
    "for_inference",
    "from_pretrained",
    "load_model",
    "load_official_checkpoint",
    "load_released",
    "optimize_for_inference",
    "predict",
    "read_checkpoint",
    "released_path",
    "save_checkpoint",
    "save_pretrained",
]
