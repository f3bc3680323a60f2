"""package: the model handed over, from the trained network and params.yaml's `package` section.

    python -m stages.package models/trained.keras models/model.keras
With package.tta_shift n > 0 the saved model averages the network's probabilities over the image
moved by up to n pixels each way, (2n + 1)^2 copies (notmnist.core.models.with_shifts), so that grade,
predict, export and a plain `keras.models.load_model` get the same test-time augmentation that
evaluate measures. Its own stage: changing it reruns this and evaluate, never training.
"""

import argparse
from pathlib import Path

from notmnist.core import config, records
from notmnist.core.contract import load_model
from notmnist.core.runtime import entry_point


@entry_point
def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("network_path", type=Path, help="the trained network (train's output)")
    parser.add_argument("model_path", type=Path, help="where to save the model handed over")
    args = parser.parse_args()
    started_with = records.fingerprint()
    settings = config.load()
    records.refuse_mixed(args.network_path, settings, records.TRAINED_BY, "train")
    shift = settings.package.tta_shift
    network = load_model(args.network_path)
    from notmnist.core.models import save_model, with_shifts  # after load_model has quieted TensorFlow's start-up

    model = with_shifts(network, shift)
    records.refuse_changed(started_with)
    save_model(model, args.model_path)
    records.stamp(args.model_path, settings, records.PACKAGED_BY)  # what evaluate checks
    kind = f"averaging {(2 * shift + 1) ** 2} shifted copies" if shift else "the trained network alone"
    print(f"package: saved {args.model_path}: {kind}")


if __name__ == "__main__":
    main()
