"""A training run: the pipeline over the stages (the Run), what `cnn train`'s options ask for
(request), its run record (run.json), the HParams, tf.distribute and the cluster. Imports the
layers below.
"""
