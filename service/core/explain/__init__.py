"""Exact per-prediction explanations: feature attributions that add up to the model's output.

Pure computation, no HTTP: `explainer.ModelExplainer` (one version's estimator, split,
explained and checked), the exact methods (`trees`, `boosters`, `linear`), the map from
columns back to input features (`columns`), and `explanations.Explanations`, the app's
component that builds explainers on first use and runs explain calls on their own
threads. This package's `__init__` imports nothing: `service.settings` imports
`settings` from here before the command line has set up multiprocess metrics, which
must come before prometheus_client is first imported (`service.multiproc`).
"""
