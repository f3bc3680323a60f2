"""The whole check of a params file, as the check stage and `notmnist params` run it."""

from notmnist.core import config
from notmnist.core.runtime import PipelineError, quiet_tensorflow


def check_params(path="params.yaml"):
    """config.load, then the network as Keras builds it (models.network_errors); raises a PipelineError
    naming every problem, else returns the settings."""
    settings = config.load(path)
    quiet_tensorflow()
    from notmnist.core.models import network_errors

    if errors := network_errors(settings):
        raise PipelineError("invalid params.yaml:\n  " + "\n  ".join(errors))
    return settings
