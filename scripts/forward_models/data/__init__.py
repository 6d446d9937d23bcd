"""Rollout collection, the Zarr store and the window sampler."""
