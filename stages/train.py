"""train: build the network from params.yaml, fit it on the train split, watch validation.

    python -m stages.train data/processed models/trained.keras
Logs per-epoch loss, accuracy and learning rate with DVCLive into metrics/train/ (ensemble member
i > 0 of train.ensemble into metrics/train/member_<i>/), and the wall-clock cost into
metrics/timing.json. An ensemble is saved as one model averaging its members' probabilities. The
test split is never read here. The saved network holds only Keras's own layers (notmnist.core.models.to_stock);
the package stage makes models/model.keras of it.
"""

import argparse
import time
from pathlib import Path

from notmnist.core import config as params
from notmnist.core.io import check_writable, refuse_overwriting_inputs, write_json
from notmnist.core.FILES_LEFT import params_fingerprint, refuse_changed_params
from notmnist.core.runtime import entry_point, setup_tensorflow

LIVE_DIR = Path("metrics/train")
TIMING = Path("metrics/timing.json")


@entry_point
def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("model_path", type=Path)
    args = parser.parse_args()
    started_with = params_fingerprint()  # before loading: a rewrite from now on is caught before saving
    settings = params.load()
    refuse_overwriting_inputs([args.data_dir / "train.npz", args.data_dir / "val.npz"], [args.model_path, LIVE_DIR])
    for path, folder in ((args.model_path, False), (LIVE_DIR, True), (TIMING, False)):  # before the long work
        check_writable(path, folder)
    from notmnist.core.training import load_split, train_members  # after params: a bad file fails before TensorFlow loads

    x, y = load_split(args.data_dir / "train.npz")
    validation = load_split(args.data_dir / "val.npz")
    setup_tensorflow(settings["threads"], settings["seed"])
    import keras

    from notmnist.core.models import ensemble, save_model

    keras.mixed_precision.set_dtype_policy(settings["train"]["precision"])
    start = time.perf_counter()
    members, epochs = train_members(settings, x, y, validation, LIVE_DIR)
    seconds = time.perf_counter() - start
    refuse_changed_params(started_with)
    save_model(ensemble(members), args.model_path)
    write_json(
        TIMING,
        {
            "train": {
                "seconds": round(seconds, 1),
                "epochs": epochs,
                "images_per_second": round(epochs * len(x) / seconds, 1),
            }
        },
    )
    print(f"train: {epochs} epochs in {seconds:.0f} s; saved {args.model_path}")


if __name__ == "__main__":
    main()
