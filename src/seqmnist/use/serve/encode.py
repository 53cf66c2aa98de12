"""Answers -> the JSON a client gets (the shapes /openapi.json documents, in schemas.py)."""

from __future__ import annotations

from typing import Any

import numpy as np

from seqmnist.use.explain import STEP_NAMES
from seqmnist.use.serve.batcher import Answer
from seqmnist.use.serve.served import ServedRun

TOP = 3
# The image is for showing: three decimals are finer than any screen's grey levels.
IMAGE_DECIMALS = 3


def prediction_json(run: ServedRun, answer: Answer) -> dict[str, Any]:
    class_names = run.predictor.class_names
    probabilities = answer.probabilities.tolist()
    order = np.argsort(answer.probabilities)[::-1][:TOP]
    index = int(order[0])
    body: dict[str, Any] = {
        "run": run.name,
        "label": class_names[index],
        "index": index,
        "class_names": list(class_names),
        "probabilities": probabilities,
        "top": [{"label": class_names[i], "probability": probabilities[i]} for i in order],
        # Rounded in float64: a float32 0.897 prints as 0.8970000147819519.
        "image": np.round(answer.image.astype(np.float64), IMAGE_DECIMALS).tolist(),
    }
    if answer.step_probabilities is not None:
        model = run.predictor.model
        body["steps"] = {
            "view": model.view.kind,
            "step_name": STEP_NAMES[model.view.kind],
            "bidirectional": model.bidirectional,
            "steps": list(answer.steps),
            "probabilities": answer.step_probabilities.tolist(),
        }
    return body
