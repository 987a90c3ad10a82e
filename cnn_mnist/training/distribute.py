"""Step 5 on several devices or machines: the fit loop under `tf.distribute`.

Keras 3's `Model.fit` fails under `MultiWorkerMirroredStrategy` (keras-team/keras#20585: it
cannot convert a `PerReplica` value to a tensor), so distributed training runs its own step with
`strategy.run` and drives the same Keras callbacks `fit` would: the progress bar, validation,
TensorBoard, backups, the epoch log and early stopping behave as in single-process training.

`training.batch_size` is the global batch: each step, the replicas share it and their gradients
are summed (Keras's optimizer all-reduces them) over a loss divided by the global batch, so a
step is the same mean-loss step as on one device, and the learning rate is left as configured.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from cnn_mnist.config.schema import TensorBoardConfig, TrainingConfig
from cnn_mnist.core.errors import ClusterError
from cnn_mnist.stages.card import ModelCard
from cnn_mnist.stages.data import Prepared
from cnn_mnist.stages.fit import (
    EpochSeeds,
    FitTimer,
    TestValidation,
    fit_callbacks,
    fit_history,
    train_dataset,
)
from cnn_mnist.training.cluster import chief_task, read_tf_config

log = logging.getLogger(__name__)

SUM = tf.distribute.ReduceOp.SUM


@dataclass
class Cluster:
    """Where training runs: the strategy, and this process's place in it."""

    strategy: tf.distribute.Strategy
    kind: str  # "mirrored" or "multi_worker"
    replicas: int
    workers: int = 1
    task: str = "chief 0"
    is_chief: bool = True  # the one process that writes the model, the run record and the logs

    @property
    def single_process(self) -> bool:
        """Mirrored, or a cluster of one worker: nothing to agree on with other processes."""
        return self.kind != "multi_worker" or self.workers == 1


def make_cluster(training: TrainingConfig) -> Cluster:
    """The strategy for `training.distribution`; call before TensorFlow runs anything.

    For multi_worker this waits (up to `training.collective_timeout`) for every worker.
    """
    if training.distribution == "mirrored":
        return _mirrored(training.cpu_devices)
    if training.distribution == "multi_worker":
        try:
            return _multi_worker(training.collective_timeout)
        except PEER_ERRORS as exc:
            raise peer_failure(
                exc,
                "could not form the cluster from TF_CONFIG: a worker did not "
                "answer within training.collective_timeout; start `cnn train` "
                "on every worker and check TF_CONFIG's addresses",
            ) from None
    raise ValueError(f"no distribution strategy for {training.distribution!r}")


def agree(cluster: Cluster, run_id: str, config_yaml: str) -> tuple[str, str]:
    """The chief's run id and resolved config (seed included), on every worker: one run,
    whatever the other workers were started with."""
    if cluster.single_process:
        return run_id, config_yaml
    try:
        return broadcast_text(cluster, run_id), broadcast_text(cluster, config_yaml, 1 << 16)
    except PEER_ERRORS as exc:
        raise peer_failure(exc, "could not start the run: another worker stopped") from None


def _mirrored(cpu_devices: int) -> Cluster:
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        strategy = tf.distribute.MirroredStrategy()
    else:
        # No GPU: split the CPU into logical devices, one replica each (how this is tested).
        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_devices
            )
        except RuntimeError:  # already set in this process (tests): keep what is there
            pass
        devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        if len(devices) != cpu_devices:
            log.warning(
                "TensorFlow was already running with %d CPU device(s); training on "
                "those instead of training.cpu_devices=%d",
                len(devices),
                cpu_devices,
            )
        # NCCL is for GPUs; on CPUs the replicas' values are summed on one device.
        strategy = tf.distribute.MirroredStrategy(
            devices, cross_device_ops=tf.distribute.ReductionToOneDevice()
        )
    return Cluster(strategy, "mirrored", strategy.num_replicas_in_sync)


def _multi_worker(timeout: float) -> Cluster:
    spec = read_tf_config()
    cluster, task = spec["cluster"], spec["task"]
    _coordination_timeouts(cluster, timeout)
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.RING,
        timeout_seconds=timeout,
    )
    strategy = tf.distribute.MultiWorkerMirroredStrategy(
        cluster_resolver=resolver, communication_options=options
    )
    workers = sum(len(v) for v in cluster.values())
    return Cluster(
        strategy,
        "multi_worker",
        strategy.num_replicas_in_sync,
        workers,
        f"{task['type']} {task['index']}",
        chief_task(spec),
    )


# Seconds without a heartbeat before the coordination service (on the chief) declares a worker
# dead; each worker sends one every half of this. A constant, the same on every worker: the
# service checks with the chief's value but each worker beats at its own, and a worker restarted
# with `cnn train --resume` has the default config (collective_timeout 120 s: a beat every 60 s),
# not the run's (the test's 30 s), so deriving it from collective_timeout made a resumed cluster
# fail with "stopped sending heartbeats" whenever it outlived the chief's timeout (a busy
# machine). A dead process is found sooner anyway: its sockets close and the collectives fail.
HEARTBEAT_TIMEOUT_S = 60


def _coordination_timeouts(cluster: dict, timeout: float) -> None:
    """Bound the waits on other workers: joining the cluster and the final barrier (by
    `timeout`), and a silent worker (HEARTBEAT_TIMEOUT_S).

    MultiWorkerMirroredStrategy configures TensorFlow's coordination service itself, with no
    timeouts (a worker that never starts is waited for forever); it keeps a configuration that
    is already there, so ours goes first, with the same jobs.
    """
    from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
    from tensorflow.python.eager import context

    if context.context().coordination_service is not None:
        return
    jobs = [
        coordination_config_pb2.CoordinatedJob(name=job, num_tasks=len(cluster[job]))
        for job in ("chief", "worker")
        if job in cluster
    ]
    leader = "/job:chief/replica:0/task:0" if "chief" in cluster else "/job:worker/replica:0/task:0"
    ms = int(timeout * 1000)
    context.context().configure_coordination_service(
        service_type="standalone",
        service_leader=leader,
        coordinated_jobs=jobs,
        cluster_register_timeout_in_ms=ms,
        heartbeat_timeout_in_ms=HEARTBEAT_TIMEOUT_S * 1000,
        shutdown_barrier_timeout_in_ms=ms,
    )
    # Without the barrier, the register timeout is not applied to the tasks still missing.
    context.context().coordination_service.cluster_register_with_barrier = True


# What TensorFlow raises when a peer dies, hangs past the timeouts, or never joins.
PEER_ERRORS = (
    tf.errors.UnavailableError,
    tf.errors.DeadlineExceededError,
    tf.errors.AbortedError,
    tf.errors.CancelledError,
    tf.errors.InternalError,
)


def peer_failure(exc: Exception, what: str) -> ClusterError:
    """`what` went wrong, with TensorFlow's cause in one line (no graph trace)."""
    message = str(getattr(exc, "message", exc))
    joined = re.search(
        r"Wait_for_all_tasks_to_register.*reached the barrier: (\d+)/(\d+)", message, re.S
    )
    if joined:
        return ClusterError(
            f"{what}: only {joined[1]} of {joined[2]} workers joined within "
            "training.collective_timeout; start `cnn train` on every worker in "
            "TF_CONFIG within that time, or raise the timeout"
        )
    lines = [line.strip() for line in message.splitlines()]
    useful = [
        line
        for line in lines
        if line
        and not line.startswith(
            (
                "Detected at node",
                "File ",
                "[[",
                "Graph execution error",
                "The error could be",
                "Additional GRPC",
                ":UNKNOWN",
                "The tasks have crashed",
            )
        )
    ]
    cause = " ".join(useful[:2]).replace("Collective ops is aborted by: ", "")[:300]
    return ClusterError(f"{what} (TensorFlow: {cause})")


def weights_sha256(model: keras.Model) -> str:
    """A fingerprint of the model's weights: workers in lockstep print the same one."""
    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(np.ascontiguousarray(weight.numpy()).tobytes())
    return digest.hexdigest()


def broadcast(cluster: Cluster, values: list) -> list:
    """The chief's `values` (numbers or arrays), on every worker, as float64 NumPy arrays.

    An all-reduce sum to which only replica 0 (the chief's first device) contributes.
    """
    if cluster.single_process:
        return [np.asarray(v, dtype=np.float64) for v in values]
    constants = [tf.constant(np.asarray(v), dtype=tf.float64) for v in values]

    def replica_fn():
        ctx = tf.distribute.get_replica_context()
        keep = tf.cast(tf.equal(ctx.replica_id_in_sync_group, 0), tf.float64)
        return ctx.all_reduce(SUM, [c * keep for c in constants])

    reduced = cluster.strategy.run(tf.function(replica_fn))
    return [cluster.strategy.experimental_local_results(r)[0].numpy() for r in reduced]


def broadcast_text(cluster: Cluster, text: str, size: int = 128) -> str:
    """The chief's `text` (a run id, say) on every worker."""
    codes = np.zeros(size)
    raw = text.encode()[:size]
    codes[: len(raw)] = list(raw)
    (received,) = broadcast(cluster, [codes])
    return bytes(int(c) for c in received if c).decode()


def sync_from_chief(cluster: Cluster, model: keras.Model, initial_epoch: int) -> int:
    """After the chief restored a backup, give every worker its weights, optimizer state and
    epoch, so a restarted cluster carries on from the chief's last finished epoch."""
    if cluster.single_process:
        return initial_epoch
    unique = {id(v): v for v in [*model.variables, *model.optimizer.variables]}
    variables = list(unique.values())  # weights, dropout's seed state, the optimizer's moments
    values = broadcast(cluster, [float(initial_epoch)] + [v.numpy() for v in variables])
    for variable, value in zip(variables, values[1:]):
        variable.assign(value.astype(variable.dtype))
    return int(values[0])


def _any_worker(cluster: Cluster, flag: bool) -> bool:
    """True on every worker if it is true on any (so all stop at the same epoch)."""
    if cluster.single_process:
        return flag

    def replica_fn():
        ctx = tf.distribute.get_replica_context()
        return ctx.all_reduce(SUM, tf.constant(1.0 if flag else 0.0, tf.float64))

    result = cluster.strategy.run(tf.function(replica_fn))
    return bool(cluster.strategy.experimental_local_results(result)[0].numpy() > 0)


def distributed_dataset(
    cluster: Cluster, data: Prepared, training: TrainingConfig, epoch: tf.Variable | int = 0
):
    """Global batches, each split among the replicas. Every worker reads the same shuffled
    order (that of `epoch`, see make_dataset) and keeps its share of each batch (DATA
    sharding: there are no files to split)."""
    dataset = train_dataset(data, training, epoch)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return cluster.strategy.experimental_distribute_dataset(dataset.with_options(options))


def make_train_step(cluster: Cluster, model: keras.Model, loss_name: str):
    """One optimizer step on a global batch; returns (summed loss, correct, examples)."""
    strategy = cluster.strategy
    loss_fn = keras.losses.get(loss_name)  # per example: no reduction

    def replica_step(x, y):
        ctx = tf.distribute.get_replica_context()
        local = tf.cast(tf.shape(x)[0], tf.float32)
        total = ctx.all_reduce(SUM, local)  # the global batch, also when the last is short
        with tf.GradientTape() as tape:
            predictions = model(x, training=True)
            per_example = loss_fn(y, predictions)
            loss = tf.reduce_sum(per_example) / tf.maximum(total, 1.0)
            if model.losses:  # regularizers: counted once across the replicas
                loss += tf.add_n(model.losses) / ctx.num_replicas_in_sync
        variables = model.trainable_variables
        gradients = tape.gradient(loss, variables)
        model.optimizer.apply_gradients(zip(gradients, variables))  # all-reduces (sums) them
        correct = tf.reduce_sum(
            tf.cast(tf.equal(tf.argmax(y, -1), tf.argmax(predictions, -1)), tf.float32)
        )
        return tf.reduce_sum(per_example), correct, local

    @tf.function
    def step(iterator):
        results = strategy.run(replica_step, args=next(iterator))
        return [strategy.reduce(SUM, r, axis=None) for r in results]

    return step


def fit(
    cluster: Cluster,
    model: keras.Model,
    data: Prepared,
    *,
    training: TrainingConfig,
    tensorboard: TensorBoardConfig,
    loss: str,
    run_dir: Path,
    verbose: int = 1,
    card: ModelCard | None = None,
    timer: FitTimer | None = None,
    validation: TestValidation | None = None,
) -> dict:
    """stages/fit.py's `fit` under the cluster's strategy: same callbacks, same logs, same backups.

    The model and its optimizer must have been made in `cluster.strategy.scope()`.
    """
    with cluster.strategy.scope():
        model.optimizer.build(model.trainable_variables)  # mirrored, before a backup loads
    steps = math.ceil(len(data.labels_train) / training.batch_size)
    seeds = EpochSeeds()  # each epoch's order and dropout masks, also after a resume
    train = distributed_dataset(cluster, data, training, seeds.epoch)
    step = make_train_step(cluster, model, loss)
    listed = fit_callbacks(
        data,
        training=training,
        tensorboard=tensorboard,
        run_dir=run_dir,
        card=card,
        timer=timer,
        validation=validation,
        seeds=seeds,
    )
    hooks = keras.callbacks.CallbackList(
        listed,
        add_history=True,
        add_progbar=verbose != 0,
        model=model,
        verbose=verbose,
        epochs=training.epochs,
        steps=steps,
    )
    model.stop_training = False
    model._initial_epoch = 0
    try:
        logs = _loop(cluster, model, step, train, steps, hooks, training.epochs)
    except PEER_ERRORS as exc:
        raise peer_failure(
            exc, "training stopped: another worker stopped or stopped answering"
        ) from None
    hooks.on_train_end(logs)
    history = model.history.history if model.history else {}
    return fit_history(model, history, tensorboard, run_dir if cluster.is_chief else None)


def _loop(cluster, model, step, train, steps, hooks, epochs) -> dict:
    """Keras's fit loop, callback for callback, over the distributed steps."""
    hooks.on_train_begin()  # BackupAndRestore loads the last finished epoch here (the chief's)
    first_epoch = sync_from_chief(cluster, model, model._initial_epoch or 0)
    logs: dict = {}
    for epoch in range(first_epoch, epochs):
        hooks.on_epoch_begin(epoch)
        loss_sum = correct = seen = 0.0
        iterator = iter(train)
        for batch in range(steps):
            hooks.on_train_batch_begin(batch)
            batch_loss, batch_correct, batch_seen = (float(v) for v in step(iterator))
            loss_sum, correct, seen = (
                loss_sum + batch_loss,
                correct + batch_correct,
                seen + batch_seen,
            )
            logs = {"loss": loss_sum / seen, "accuracy": correct / seen}
            hooks.on_train_batch_end(batch, logs)
        logs = dict(logs)
        hooks.on_epoch_end(epoch, logs)
        if _any_worker(cluster, bool(model.stop_training)):
            break
    return logs
