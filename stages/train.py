"""train: build the network from params.yaml, fit it on the train split, watch validation.

    python -m stages.train data/processed models/trained.keras
Logs per-epoch loss, accuracy and learning rate with DVCLive into metrics/train/ (ensemble member
i > 0 of train.ensemble into metrics/train/member_<i>/), and the wall-clock cost into
metrics/timing.json; beside the network, models/trained.json: the parameters it used (records.stamp).
An ensemble is saved as one model averaging its members' probabilities. The test split is never read
here. The package stage makes models/model.keras of the saved network.
"""

import argparse
import time
from pathlib import Path

from notmnist.core import config, records
from notmnist.core.io import write_json
from notmnist.core.runtime import entry_point, setup_tensorflow

LIVE_DIR = Path("metrics/train")
TIMING = Path("metrics/timing.json")


@entry_point
def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("model_path", type=Path)
    args = parser.parse_args()
    started_with = records.fingerprint()  # before loading: a rewrite from now on is caught before saving
    settings = config.load()
    from notmnist.core.training import load_split, train_members  # after params: a bad file fails before TF loads

    x, y = load_split(args.data_dir / "train.npz")
    validation = load_split(args.data_dir / "val.npz")
    setup_tensorflow(settings.threads, settings.seed)
    import keras

    from notmnist.core.models import ensemble, save_model

    keras.mixed_precision.set_dtype_policy(settings.train.precision)
    start = time.perf_counter()
    members, epochs = train_members(settings, x, y, validation, LIVE_DIR)
    seconds = time.perf_counter() - start
    records.refuse_changed(started_with)
    save_model(ensemble(members), args.model_path)
    records.stamp(args.model_path, settings, records.TRAINED_BY)  # what package checks
    speed = round(epochs * len(x) / seconds, 1)
    write_json(TIMING, {"train": {"seconds": round(seconds, 1), "epochs": epochs, "images_per_second": speed}})
    print(f"train: {epochs} epochs in {seconds:.0f} s; saved {args.model_path}")


if __name__ == "__main__":
    main()
