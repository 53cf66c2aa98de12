"""The API's answers as pydantic models: they document /openapi.json.

Routes build their JSON directly (encode.py) rather than through these
models, which would validate every answer again on the hot path; the API
tests check that real answers match them.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class Run(BaseModel):
    name: str = Field(description="the name to pass as ?run=")
    cell: str
    view: str = Field(
        description="how the image becomes a sequence: rows, columns, pixels, permuted"
    )
    step_name: str = Field(description="what one time step reads: row, column or pixel")
    steps: int = Field(description="time steps per image")
    hidden_sizes: list[int]
    bidirectional: bool
    parameters: int
    image_shape: list[int]
    class_names: list[str]
    test_accuracy: float | None = Field(description="from the run's summary; null if none")
    preset: str | None


class Runs(BaseModel):
    runs: list[Run] = Field(
        description="the served runs; the first answers when ?run= is not given"
    )


class TopClass(BaseModel):
    label: str
    probability: float


class Steps(BaseModel):
    view: str
    step_name: str
    bidirectional: bool
    steps: list[int] = Field(description="steps read at each point, 1-based")
    probabilities: list[list[float]] = Field(
        description="class probabilities had the image ended after each point"
    )


class Prediction(BaseModel):
    run: str
    label: str
    index: int
    class_names: list[str]
    probabilities: list[float]
    top: list[TopClass]
    image: list[list[float]] = Field(description="the preprocessed image the model read, [0, 1]")
    steps: Steps | None = Field(None, description="only with ?steps=true")


class Error(BaseModel):
    detail: str = Field(description="what is wrong and what to do")


class Health(BaseModel):
    status: str
    runs: int
