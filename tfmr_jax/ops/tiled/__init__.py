"""Internals of `tfmr_jax.ops.tiled_attention`: the block plan (plan), block slicing and
matmuls (blocks), the online-softmax forward (forward) and the hand-written backward
(backward). Import the op from tfmr_jax.ops.tiled_attention.
"""
