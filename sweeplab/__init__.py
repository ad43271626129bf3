"""sweeplab: hyperparameter sweeps of research training methods on Ray Tune + Optuna + MLflow."""

__version__ = "0.1.0"
