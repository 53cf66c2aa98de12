"""Answers -> the JSON a client gets (the shapes /openapi.json documents, in schemas.py).

The answer is made a Prediction (and an Explanation, with steps), so the
label, the top classes and the steps mean what they mean for `seqmnist predict`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from seqmnist.use.explain import Explanation
from seqmnist.use.predict import Prediction
from seqmnist.use.serve.batcher import Answer
from seqmnist.use.serve.served import ServedRun

# The image is for showing: three decimals are finer than any screen's grey levels.
IMAGE_DECIMALS = 3


def prediction_json(run: ServedRun, answer: Answer) -> dict[str, Any]:
    class_names = run.predictor.class_names
    prediction = Prediction(
        run.name, tuple(answer.probabilities.tolist()), class_names, answer.image
    )
    body: dict[str, Any] = {
        "run": run.name,
        "label": prediction.label,
        "index": prediction.index,
        "class_names": list(class_names),
        "probabilities": list(prediction.probabilities),
        "top": [{"label": name, "probability": p} for name, p in prediction.top()],
        # Rounded in float64: a float32 0.897 prints as 0.8970000147819519.
        "image": np.round(answer.image.astype(np.float64), IMAGE_DECIMALS).tolist(),
    }
    if answer.step_probabilities is not None:
        model = run.predictor.model
        explanation = Explanation(
            run.name, model.view.kind, answer.steps, answer.step_probabilities, class_names,
            model.bidirectional, answer.image,
        )  # fmt: skip
        steps = explanation.to_dict()
        del steps["file"]
        body["steps"] = {**steps, "step_name": explanation.step_name}
    return body
