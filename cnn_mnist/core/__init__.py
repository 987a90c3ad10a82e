"""Plumbing every layer uses: errors, paths, atomic files, the TensorFlow import, the
dataset table, run ids. Imports nothing of the package above it; no click, and
TensorFlow only inside runtime's functions.
"""
