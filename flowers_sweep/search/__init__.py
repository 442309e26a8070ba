"""A hyperparameter search on Optuna: Hydra's grammar as distributions, the study,
pruning.
"""
