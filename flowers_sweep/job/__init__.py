"""A Hydra job's life: its outcome rules, its launch's sweep folder, stop signals, the
files Hydra's job needs.
"""
