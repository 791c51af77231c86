"""Triton kernels (`vtalign.kernels`): @triton.jit code and one launcher per kernel."""
