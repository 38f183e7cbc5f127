"""fairdistill from Python, as in a notebook: build a config in code, run it, read the results as DataFrames;
then distil into one's own model with a plain PyTorch loop, using a method's per-example loss and weights.

    python examples/notebook_api.py [OUTPUT_DIR]      # about 20 s on a laptop CPU; runs go to OUTPUT_DIR (runs/)
"""

from __future__ import annotations

import sys

import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader

import fairdistill as fd

output = sys.argv[1] if len(sys.argv) > 1 else "runs"
pd.set_option("display.width", 200)
pd.set_option("display.max_columns", 20)

# ------------------------------------------------------------------------------ 1. a run, configured in code
config = fd.make_config(
    {
        "name": "notebook",
        "data": {"name": "colored-mnist", "max_examples": 300},
        "teacher": {
            "model": {"name": "cnn", "width": 8, "blocks": 2},
            "train": {"epochs": 3, "batch_size": 25, "lr": 0.01},
        },
        "student": {
            "model": {"name": "cnn", "width": 4, "blocks": 2},
            "train": {"epochs": 2, "batch_size": 25, "lr": 0.01},
        },
        "methods": [
            {"name": "kd", "loss": {"kind": "kd", "tau": 2.0, "alpha": 0.9}},
            {"name": "groupdro", "loss": {"kind": "kd"}, "weighting": {"kind": "groupdro", "eta": 0.01}},
        ],
        "output": output,
    }
)
# (or: config = fd.load_config("default", overrides={"data.max_examples": 300}) for a file or packaged config)
results = fd.run(config, progress="quiet")
print(results)
print(results.table("test").round(3))  # one row per model: role, method, params, accuracy, worst-group, MAD, ...

predictions = results.predictions("kd", "test")  # index, y, attr, group, pred, prob_0, prob_1
print("kd test accuracy from its predictions:", round(float((predictions.pred == predictions.y).mean()), 3))
print("report:", results.report_path)

again = fd.load_results(results.run_dir)  # a finished run, read back (e.g. in another session)
assert again.table().equals(results.table())


# ------------------------------------------------------------------------ 2. one's own model and training loop
class MyNet(nn.Module):
    """Any nn.Module that maps the batch's input tensor to logits."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.conv2 = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.ReLU())
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.conv2(self.conv1(x))))


torch.manual_seed(0)
splits = results.load_data()  # the run's splits (or fd.load_data("colored-mnist", max_examples=300))
teacher = results.load_model("teacher", splits)  # the run's trained teacher
# taps name submodules whose outputs the methods read (here: an early readout on conv1); embedding: penultimate
student = fd.TappedModel(MyNet(splits.info.num_classes), taps={"conv1": "conv1", "conv2": "conv2"}, embedding="pool")

epochs = 2  # epoch 1 trains with w = 1; the readout fit after it sets the weights of epoch 2
objective = fd.make_method(
    {
        "name": "dedier",
        "loss": {"kind": "kd", "tau": 2.0, "alpha": 0.9},
        "weighting": {"kind": "early-readout", "tap": "conv1", "beta": 3.0, "alpha": 0.2},
    },
    splits,
    student,
    teacher=teacher,
    epochs=epochs,
)
optimizer = torch.optim.Adam([*student.parameters(), *objective.parameters()], lr=1e-2)
loader = DataLoader(splits.train, batch_size=50, shuffle=True, collate_fn=fd.collate)
for epoch in range(epochs):
    student.train()
    for batch in objective.epoch(loader, optimizer):  # runs the refits between epochs, counts steps
        out = student(batch.inputs)  # ModelOutput: logits, taps, embedding
        per_example = objective.per_example_loss(batch, out)  # ℓ_i: kd per example, shape (B,)
        weights = objective.weights(batch, out, per_example)  # w_i: early-readout weights
        loss = (weights * per_example).mean() + objective.extra_loss(batch, out)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    stats = objective.history[-1]  # this epoch's weight statistics (and the readout's accuracy), as in a run
    print(
        f"epoch {epoch + 1}: last batch loss {loss.item():.4f}, mean weight {stats['weight_mean']:.2f}, "
        f"up-weighted {stats['weight_share_upweighted']:.0%}"
    )

student.eval()
mine = fd.evaluate_model(student, splits, "test")
print(
    f"my student (test): accuracy {mine['accuracy']:.3f}, worst-group {mine['worst_group_accuracy']:.3f}, "
    f"MAD {mine['recall_disparity_mad']:.3f}"
)
