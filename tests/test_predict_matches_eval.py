"""One input contract (issue 14): ``svde.api.predict`` on a photo gives exactly the log-disparity
that the evaluator scores (UTS mode) for the same image."""

import numpy as np
import pytest
import torch

import svde.evaluation.evaluator as evaluator
from svde.api import predict
from svde.data import build_dataset
from svde.evaluation import evaluate_model


@pytest.mark.parametrize("short_side", [None, 64])
def test_predict_reproduces_the_evaluated_prediction(mn_model, monkeypatch, short_side):
    dataset = build_dataset("synthetic", split="val", length=2, height=72, width=100)
    scored = []
    real = evaluator.evaluate_prediction

    def spy(pred, sample, protocol, modes, *args):
        size = tuple(sample["target"].shape[-2:])
        scored.append(evaluator.upsample(pred.double(), size).float())  # what UTS mode scores
        return real(pred, sample, protocol, modes, *args)

    monkeypatch.setattr(evaluator, "evaluate_prediction", spy)
    evaluate_model(mn_model, dataset, protocol="synthetic", short_side=short_side, batch_size=2)
    assert len(scored) == len(dataset) == 2  # every evaluated image is compared (never an empty loop)
    for i, evaluated in enumerate(scored):
        rgb = dataset.read(dataset.records[i])["image"]  # the file's own uint8 pixels
        assert rgb.dtype == np.uint8 and evaluated.shape == rgb.shape[:2]
        # the protocol's default shorter side is 384, as the paper's evaluation
        got = torch.from_numpy(predict(mn_model, rgb, short_side=short_side or 384))
        assert (got - evaluated).abs().max().item() <= 1e-5


def test_predict_edge_cases_from_review():
    from svde.errors import UserError
    from svde.models import build_model

    rgb = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    with torch.inference_mode():  # inference tensors have no version counters: no cache, still works
        made_here = build_model("mn_lrn4")
    assert predict(made_here, rgb).shape == (40, 50)
    model = build_model("mn_lrn4")
    with pytest.raises(UserError, match=r"float RGB image must hold values in \[0, 1\]"):
        predict(model, rgb.astype(np.float32))
    half = predict(build_model("mn_lrn4").to(torch.bfloat16), rgb)  # input cast to the weights' dtype
    assert half.shape == (40, 50) and np.isfinite(half).all()
