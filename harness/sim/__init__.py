"""Simulated mode: the live runner on a virtual clock with an in-process transport; replay of one trial."""
