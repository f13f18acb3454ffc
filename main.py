"""Entry point: parses flags, starts multi-host JAX if there is a cluster, calls train.py.

  python main.py --config configs/quickstart.py --workdir runs/quickstart
  python main.py --config configs/quickstart.py --workdir runs/quickstart --mode=eval [--step N]
  python main.py --config configs/quickstart.py:tiny --workdir /tmp/t --config.optimizer.learning_rate=0.005
"""

import os
import sys

# TensorFlow only feeds data: keep it off every accelerator and quiet.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/quickstart.py[:tiny].")
flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and evaluation results.")
flags.DEFINE_enum("mode", "train", ["train", "eval"], "train (resumes, evaluates) or eval only.")
flags.DEFINE_integer("step", None, "With --mode=eval: checkpoint step to evaluate (default latest).")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0 for a manual multi-process run.")
flags.DEFINE_integer("num_processes", None, "Number of processes of a manual multi-process run.")
flags.DEFINE_integer("process_id", None, "This process's index in a manual multi-process run.")
flags.mark_flags_as_required(["config", "workdir"])


def init_distributed():
    """Multi-host start-up: explicit flags, or auto-detection on TPU / SLURM / cluster VMs."""
    import jax

    if FLAGS.coordinator_address:
        jax.distributed.initialize(
            coordinator_address=FLAGS.coordinator_address,
            num_processes=FLAGS.num_processes,
            process_id=FLAGS.process_id,
        )
        return
    try:
        jax.distributed.initialize()
    except (ValueError, RuntimeError) as e:
        # A single machine without a cluster environment: run as one process.
        logging.info("Single-process run (%s)", str(e).splitlines()[0] if str(e) else e)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not FLAGS["verbosity"].present:
        # Library INFO chatter (orbax, TFDS) would bury the progress lines; -v 0 brings it back.
        logging.set_verbosity(logging.WARNING)
    import jax
    import tensorflow as tf

    # Re-runs and restarts skip XLA compilation (tens of seconds on CPU) via the persistent cache.
    jax.config.update(
        "jax_compilation_cache_dir",
        os.environ.get("JAX_COMPILATION_CACHE_DIR", os.path.expanduser("~/.cache/crowdped_jax")),
    )

    tf.config.set_visible_devices([], "GPU")
    init_distributed()
    import train

    try:
        if FLAGS.mode == "train":
            train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
        else:
            train.evaluate(FLAGS.config, FLAGS.workdir, FLAGS.step)
    except (ValueError, FileNotFoundError, train.NonFiniteLossError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main)
