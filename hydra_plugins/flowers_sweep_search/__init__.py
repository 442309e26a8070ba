"""flowers_sweep's Hydra plugins: Hydra finds plugins only in the `hydra_plugins` package."""
