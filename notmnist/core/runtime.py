"""What every command shares: the error users see, and quiet TensorFlow start-up."""

import contextlib
import functools
import os
import re
import sys
import tempfile
import warnings


class PipelineError(Exception):
    """A problem the user can fix; its message names the file, key or value and the fix."""


def entry_point(main):
    """Run `main`, turning a PipelineError, or an OSError on a named file, into one line on stderr and exit
    status 2; paths of any encoding print on any terminal (undecodable bytes as escapes)."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(AttributeError):  # not a text stream (a test's replacement)
                stream.reconfigure(errors="backslashreplace")
        try:
            return main(*args, **kwargs)
        except PipelineError as error:
            message = str(error)
        except OSError as error:
            if error.filename is None:
                raise
            message = f"{error.filename}: {error.strerror}; check the path, then rerun"
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2)

    return wrapper


def verbose():
    """True when the user asked for TensorFlow's own log lines: `notmnist --verbose` or NOTMNIST_VERBOSE=1."""
    return os.environ.get("NOTMNIST_VERBOSE", "0") not in ("", "0")


# What TensorFlow prints while it loads, before absl logging starts, whatever TF_CPP_MIN_LOG_LEVEL says,
# and what the TFLite interpreter prints when it starts.
NOISE = re.compile(
    r"All log messages before absl::InitializeLog|oneDNN custom operations are on|cpu_feature_guard"
    r"|^To enable the following instructions|Unable to register cu|computation placer already registered"
    r"|TF-TRT Warning|Could not find cuda drivers|Created TensorFlow Lite XNNPACK delegate"
)


@contextlib.contextmanager
def quiet_stderr():
    """Catch what native code writes to file descriptor 2 inside the block, and pass on only the
    lines that are not known TensorFlow noise (NOISE); a no-op when verbose()."""
    if verbose():
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            lines = caught.read().decode(errors="replace").splitlines(keepends=True)
            sys.stderr.write("".join(line for line in lines if not NOISE.search(line)))


def quiet_tensorflow():
    """Hide TensorFlow's and absl's log lines unless verbose(); call before importing tensorflow or keras.
    Imports tensorflow inside quiet_stderr(): its start-up banners ignore every log setting."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    if verbose() or "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # C++ logs: errors such as "NodeDef mentions attribute"
    import logging

    import absl.logging

    absl.logging.set_verbosity(absl.logging.ERROR)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"(keras|tensorflow|absl|ml_dtypes)(\.|$)")
    with quiet_stderr():
        import tensorflow  # noqa: F401


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
            print(
                f"warning: TensorFlow already started; cannot pin {threads} intra-op threads in this "
                "process, so convolution results may differ in the last digits",
                file=sys.stderr,
            )
    tf.config.experimental.enable_op_determinism()
    if seed is not None:
        keras.utils.set_random_seed(seed)
