"""Self-supervised generalizability estimation (SGE) and the uniform ablation.

For each training sample j, the T base models' normalised scores over the
last K epochs form a ``K×T`` sequence. A bidirectional LSTM (hidden size T by
default) plus a small fully connected head learns, by MSE, to predict epoch
e's T scores from epochs e−K..e−1 — self-supervised, the targets are the next
epoch's actual scores. Once trained on the history so far, it forecasts the
next epoch's scores ŝ from the last K epochs, and base model i's
generalization error is

    r_i = mean over j with c_ji > 0 of c_ji · (ŝ_ji − y_j)²

where ``c = error_weights`` (0 on model i's own training normals, 1.0 on
anomalies it did not train on, 0.5 otherwise) and ``y_j`` is 0 for normals,
1 for anomalies. The paper's weights are ``softmax(−r / temperature)``.

Two changes make the weights discriminate (``docs/deviations.md``): with
``relative_errors`` the unified model's error on the same weighted samples
is subtracted from r_i, so what remains is how much better or worse base
model i generalises than the model it was adapted from (without it, the
errors differed mostly by which normals each task leaves out); with
``temperature_mode="spread"`` the errors are centred and divided by their
spread over tasks (never below their sampling noise), so the weights use the
differences the errors actually show instead of staying near 1/T.

Fixes of the authors' release (defect 5): the LSTM's initial state is the
deterministic zero state, the network is in ``eval()`` (dropout off) when it
forecasts, T is read from the data, and the weights are returned as they are
(the caller applies w, not 0.5 + 0.5·w).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ahl_plugins.contracts import GeneralizabilityEstimator
from ahl_plugins.errors import DataError
from builtin_plugins.estimators import SGEOptions


def _check_inputs(n_tasks: int, history: torch.Tensor, targets: torch.Tensor, error_weights: torch.Tensor) -> None:
    if history.dim() != 3 or history.shape[2] != n_tasks:
        raise DataError(
            f"estimator built for T={n_tasks} tasks got a score history of shape {tuple(history.shape)}; "
            "expected E×N×T (epochs × samples × tasks)"
        )
    n = history.shape[1]
    if targets.shape != (n,):
        raise DataError(f"estimator: targets must have shape ({n},), got {tuple(targets.shape)}")
    if error_weights.shape != (n, n_tasks):
        raise DataError(f"estimator: error_weights must have shape ({n}, {n_tasks}), got {tuple(error_weights.shape)}")
    if not torch.isfinite(history).all():
        raise DataError("estimator: the score history holds NaN or infinite values; the base models diverged")


class UniformEstimator(GeneralizabilityEstimator):
    """Every task weighs 1/T: AHL without SGE."""

    needs_history = False

    def __init__(self, n_tasks: int) -> None:
        if n_tasks < 1:
            raise ValueError(f"n_tasks must be >= 1, got {n_tasks}")
        self.n_tasks = int(n_tasks)
        self.diagnostics: dict[str, Any] = {"status": "uniform"}

    def task_weights(self, history: torch.Tensor, targets: torch.Tensor, error_weights: torch.Tensor) -> torch.Tensor:
        return torch.full((self.n_tasks,), 1.0 / self.n_tasks)


class SGENetwork(nn.Module):
    """Bidirectional LSTM over a sample's ``K×T`` score sequence -> the next epoch's T scores in (0, 1)."""

    def __init__(self, n_tasks: int, hidden: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.hidden = hidden
        self.lstm = nn.LSTM(
            n_tasks,
            hidden,
            num_layers=layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if layers > 1 else 0.0,
        )
        self.head = nn.Sequential(nn.Linear(2 * hidden, 2 * hidden), nn.ReLU(), nn.Linear(2 * hidden, n_tasks))

    def reset_parameters(self, generator: torch.Generator) -> None:
        """PyTorch's default ranges, drawn from ``generator`` so the estimator is reproducible."""
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.startswith("lstm."):
                    bound = 1.0 / math.sqrt(self.hidden)
                else:
                    fan_in = p.shape[1] if p.dim() == 2 else p.shape[0]
                    bound = 1.0 / math.sqrt(fan_in)
                p.copy_((torch.rand(p.shape, generator=generator) * 2 - 1) * bound)

    def forward(self, sequences: torch.Tensor) -> torch.Tensor:
        # No (h0, c0) given: the zero initial state, the same on every call.
        out, _ = self.lstm(sequences)
        h = self.hidden
        summary = torch.cat([out[:, -1, :h], out[:, 0, h:]], dim=1)  # forward end, backward end
        return torch.sigmoid(self.head(summary))


class SGEEstimator(GeneralizabilityEstimator):
    """The paper's SGE; keeps its LSTM across epochs and trains it a few steps per call."""

    needs_history = True

    def __init__(self, n_tasks: int, options: SGEOptions) -> None:
        if n_tasks < 1:
            raise ValueError(f"n_tasks must be >= 1, got {n_tasks}")
        self.n_tasks = int(n_tasks)
        self.options = options
        self.window = int(options.window)
        self.generator = torch.Generator().manual_seed(int(options.seed))
        hidden = options.hidden or self.n_tasks
        self.network = SGENetwork(self.n_tasks, hidden, options.layers, options.dropout)
        self.network.reset_parameters(self.generator)
        self.optimizer = torch.optim.Adam(self.network.parameters(), lr=options.lr)
        self.diagnostics: dict[str, Any] = {}

    # -- self-supervised training ----------------------------------------------------------------------
    def fit(self, history: torch.Tensor) -> float | None:
        """A few MSE steps: predict epoch e from the ``L = min(K, E-1)`` epochs before it."""
        epochs, n, _ = history.shape
        length = min(self.window, epochs - 1)
        if length < 1 or self.options.train_steps == 0:
            return None
        n_windows = epochs - length  # targets at epochs length .. E-1
        offsets = torch.arange(length)
        self.network.train()
        losses = []
        dropout_seed = int(torch.randint(2**62, (), generator=self.generator))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(dropout_seed)  # LSTM dropout draws from the global RNG
            for _ in range(self.options.train_steps):
                losses.append(self._train_step(history, length, n_windows, n, offsets))
        return sum(losses) / len(losses)

    def _train_step(self, history: torch.Tensor, length: int, n_windows: int, n: int, offsets: torch.Tensor) -> float:
        """One Adam step on a random minibatch of (sample, window) pairs."""
        count = min(self.options.batch_size, n_windows * n)
        pick = torch.randint(n_windows * n, (count,), generator=self.generator)
        end = length + pick // n  # index of the target epoch
        sample = pick % n
        steps = end[:, None] - length + offsets[None, :]
        inputs = history[steps, sample[:, None], :]  # b×L×T
        target = history[end, sample, :]
        loss = torch.mean((self.network(inputs) - target) ** 2)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    @torch.no_grad()
    def predict(self, recent: torch.Tensor) -> torch.Tensor:
        """Forecast ``N×T`` next-epoch scores from the last K epochs (``K×N×T``), in eval mode."""
        self.network.eval()
        sequences = recent.permute(1, 0, 2)
        return torch.cat([self.network(part) for part in torch.split(sequences, 8192)])

    @staticmethod
    def per_sample_errors(predicted: torch.Tensor, targets: torch.Tensor, error_weights: torch.Tensor) -> torch.Tensor:
        """``N×T`` weighted squared errors ``c_ji (ŝ_ji − y_j)²`` (``predicted`` N×T, or N for one model)."""
        if predicted.dim() == 1:
            predicted = predicted[:, None]
        squared = (predicted - targets[:, None].to(predicted.dtype)) ** 2
        return error_weights.to(predicted.dtype) * squared

    @classmethod
    def errors(cls, predicted: torch.Tensor, targets: torch.Tensor, error_weights: torch.Tensor) -> torch.Tensor:
        """``(T,)`` generalization errors: weighted squared error, averaged over the samples each model is judged on."""
        counts = (error_weights > 0).sum(dim=0).clamp(min=1).to(predicted.dtype)
        return cls.per_sample_errors(predicted, targets, error_weights).sum(dim=0) / counts

    def _scaled(self, errors: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """What goes into the softmax: errors / temperature, or centred errors over their spread."""
        if self.options.temperature_mode == "absolute":
            return errors / self.options.temperature
        spread = errors.std(unbiased=False) if errors.numel() > 1 else torch.zeros(())
        scale = torch.maximum(spread, noise.mean()).clamp_min(1e-12)
        return (errors - errors.mean()) / (self.options.temperature * scale)

    def task_weights(
        self,
        history: torch.Tensor,
        targets: torch.Tensor,
        error_weights: torch.Tensor,
        reference: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``reference``: the unified model's normalised scores (N,) this epoch, for ``relative_errors``."""
        history = history.detach().float().cpu()
        targets = targets.detach().cpu()
        error_weights = error_weights.detach().float().cpu()
        _check_inputs(self.n_tasks, history, targets, error_weights)
        epochs = history.shape[0]
        uniform = torch.full((self.n_tasks,), 1.0 / self.n_tasks)
        if epochs < self.window:
            self.diagnostics = {"status": f"uniform until {self.window} epochs of history ({epochs} so far)"}
            return uniform
        fit_loss = self.fit(history)
        predicted = self.predict(history[-self.window :])
        per_sample = self.per_sample_errors(predicted, targets, error_weights)
        judged = error_weights > 0
        counts = judged.sum(dim=0).clamp(min=1).float()
        absolute = per_sample.sum(dim=0) / counts
        if self.options.relative_errors and reference is not None:
            reference = reference.detach().float().cpu().reshape(-1)
            if reference.shape != targets.shape:
                raise DataError(
                    f"estimator: reference must have shape {tuple(targets.shape)}, got {tuple(reference.shape)}"
                )
            per_sample = per_sample - self.per_sample_errors(reference, targets, error_weights)
        errors = per_sample.sum(dim=0) / counts
        # How much of the errors' spread noise alone explains: each r_i's standard error over its samples,
        # and the forecast's own imprecision (an LSTM off by δ = sqrt(mse) per score moves a squared error
        # by about 2·sqrt(r)·δ). The spread temperature never goes below it.
        centred = torch.where(judged, per_sample - errors, torch.zeros_like(per_sample))
        noise = (centred.square().sum(dim=0) / counts.clamp(min=2)).sqrt() / counts.sqrt()
        if fit_loss is not None:
            noise = torch.maximum(noise, 2.0 * (absolute.clamp(min=0) * fit_loss).sqrt())
        weights = torch.softmax(-self._scaled(errors, noise), dim=0)
        self.diagnostics = {
            "status": "sge",
            "lstm_mse": fit_loss,
            "errors": [float(e) for e in errors],
            "error_noise": [float(e) for e in noise],
            "relative": bool(self.options.relative_errors and reference is not None),
        }
        return weights
