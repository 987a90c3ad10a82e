"""A training run: the pipeline over the stages, its run record (run.json), the
HParams, tf.distribute and the cluster. Imports the layers below.
"""
