# Config validation and the facts rules ask for. Nothing here repeats a fact
# that convscope already holds (backbone sizes, grid expansion).
import sys

from convscope import config as cfg

try:
    cfg.load_and_validate(config)
except cfg.ConfigError as e:
    sys.exit(str(e))

R = config["results"]
CLASSES = cfg.class_names(config)
SIZES = cfg.input_sizes(config)
SPLITS = ["train", "val", "test"]


wildcard_constraints:
    cls="|".join(CLASSES),
    size=r"\d+",
    split="|".join(SPLITS),


def prepared_files(size):
    return expand(
        f"{R}/prepared/{size}/{{split}}.{{kind}}",
        split=SPLITS,
        kind=["npy", "labels.npy", "index.csv"],
    )


def prepared_all():
    return [f for size in SIZES for f in prepared_files(size)]
