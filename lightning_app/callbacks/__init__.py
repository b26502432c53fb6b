"""Training-health callbacks: divergence detection with recovery, gradient-norm monitoring, batch checks."""

from lightning_app.callbacks.batch_consistency import BatchConsistencyCheck, BatchConsistencyError
from lightning_app.callbacks.divergence import DivergenceDetector
from lightning_app.callbacks.grad_norm import GradNormMonitor

__all__ = ["BatchConsistencyCheck", "BatchConsistencyError", "DivergenceDetector", "GradNormMonitor"]
