"""Sweeps: many runs of one spec on an Optuna study, and the tables they make.

spec.py reads and checks a sweep's TOML before any trial starts; study.py
creates or joins its Optuna study; worker.py runs trials as ordinary run
folders; table.py gathers them over seeds.
"""
