"""How a run trains: set-up (device, data, model, optimizer, resume), the epoch loop,
the run's life, checkpoints, GPU slots.
"""
