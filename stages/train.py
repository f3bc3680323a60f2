"""train: build the network from params.yaml, fit it on the train split, watch validation.

    python -m stages.train data/processed models/model.keras
Logs per-epoch loss, accuracy and learning rate with DVCLive into metrics/train/, and the
wall-clock cost into metrics/timing.json. The test split is never read here. The saved model
holds only Keras's own layers (notmnist.models.to_stock).
"""

import argparse
import time
from pathlib import Path

from notmnist import params
from notmnist.files import write_json
from notmnist.runtime import entry_point, setup_tensorflow

LIVE_DIR = Path("metrics/train")
TIMING = Path("metrics/timing.json")


@entry_point
def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("model_path", type=Path)
    args = parser.parse_args()
    settings = params.load()
    from notmnist.training import fit, load_split, strategy  # after params: a bad file fails before TensorFlow loads

    x, y = load_split(args.data_dir / "train.npz")
    validation = load_split(args.data_dir / "val.npz")
    setup_tensorflow(settings["threads"], settings["seed"])
    import keras
    from dvclive import Live

    from notmnist.models import build_model, save_model

    keras.mixed_precision.set_dtype_policy(settings["train"]["precision"])
    with strategy(settings["train"]["distribute"]).scope():  # the model and its optimizer are made in the scope
        model = build_model(settings["model"])
        model.summary()
        start = time.perf_counter()
        with Live(str(LIVE_DIR), dvcyaml=False, save_dvc_exp=False, report=None) as live:
            epochs = fit(model, settings["train"], x, y, validation, live)
    seconds = time.perf_counter() - start
    save_model(model, args.model_path)
    write_json(TIMING, {"train": {"seconds": round(seconds, 1), "epochs": epochs,
                                  "images_per_second": round(epochs * len(x) / seconds, 1)}})
    print(f"train: {epochs} epochs in {seconds:.0f} s; saved {args.model_path}")


if __name__ == "__main__":
    main()
