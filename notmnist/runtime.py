"""What every command shares: the error users see, and quiet TensorFlow start-up."""

import functools
import os
import sys


class PipelineError(Exception):
    """A problem the user can fix; its message names the file, key or value and the fix."""


def entry_point(main):
    """Run `main`, turning a PipelineError into one clear line on stderr and exit status 2."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except PipelineError as error:
            print(f"error: {error}", file=sys.stderr)
            raise SystemExit(2) from None

    return wrapper


def quiet_tensorflow():
    """Hide TensorFlow's start-up chatter; call before importing tensorflow or keras."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def setup_tensorflow(threads, seed=None):
    """Pin what changes the numbers: the intra-op thread count (convolutions sum in a
    thread-dependent order), op determinism, and every random seed."""
    quiet_tensorflow()
    import keras
    import tensorflow as tf

    if tf.config.threading.get_intra_op_parallelism_threads() != threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
        except RuntimeError:  # TensorFlow already ran in this process (a notebook, a test session)
            print(f"warning: TensorFlow already started; cannot pin {threads} intra-op threads in this "
                  "process, so convolution results may differ in the last digits", file=sys.stderr)
    tf.config.experimental.enable_op_determinism()
    if seed is not None:
        keras.utils.set_random_seed(seed)
