"""Class predictions of a trained checkpoint for image files, as `blockspec predict` prints them.

Images are read as training read them (8-bit, gray or RGB by the network's input channels,
turned upright by their EXIF orientation, alpha dropped) and must already have the network's
input size: training never resized, so a resized
image would be a different kind of input than the ones the accuracy was measured on.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from blockspec.data.imagefolder import EXTENSIONS, images_below, shown_size, upright_pixels, wide_pixels
from blockspec.errors import SpecError, fail
from blockspec.filenames import readable_name
from blockspec.trained import TrainedModel

_BATCH = 256


@dataclass(frozen=True)
class Prediction:
    file: str
    top: list[tuple[str, float]]  # (class, probability), most probable first

    def to_dict(self) -> dict[str, object]:
        return {"file": self.file, "top": [{"class": name, "probability": p} for name, p in self.top]}


def image_files(paths: list[Path]) -> list[Path]:
    """The files given, and the image files inside the folders given, as training finds a
    class's images (subfolders and linked ones included, hidden ones left out), sorted."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(Path(entry.path) for _, entry in images_below(path, "IMAGES"))
            if not found:
                raise fail("IMAGES", f"the folder holds no images ({', '.join(sorted(EXTENSIONS))})", str(path))
            files += found
        elif path.is_file():
            files.append(path)
        elif path.exists():
            raise fail("IMAGES", "is neither a file nor a folder (a device, a pipe or a socket)", str(path))
        else:
            raise fail("IMAGES", "no such file or folder", str(path))
    return files


def read_image(path: Path, channels: int, hw: tuple[int, int]) -> np.ndarray:
    """H×W×C uint8 pixels of one file as training reads them (upright, alpha dropped), or a
    SpecError naming it and what is wrong; the size is checked before the pixels are decoded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL's remarks (a huge image, a palette's transparency): sizes are checked below
            with Image.open(path) as image:
                if wide := wide_pixels(image):
                    raise fail("IMAGES", wide, str(path))
                # the sides first: reading a PNG's EXIF decodes its pixels, and a turn only swaps them
                size = shown_size(image) if sorted(image.size) == sorted(hw) else image.size
                if size != hw[::-1]:
                    raise fail("IMAGES", f"is {size[0]}x{size[1]} but the network takes {hw[1]}x{hw[0]} images "
                               "(its training images' size): resize it first", str(path))
                pixels = upright_pixels(image, "L" if channels == 1 else "RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise fail("IMAGES", f"cannot read it as an image ({str(error) or type(error).__name__})", str(path)) from None
    return pixels.reshape(*hw, channels)


def predict_files(trained: TrainedModel, files: list[Path], top: int) -> tuple[list[Prediction], list[SpecError]]:
    """The `top` most probable classes of each file that can be read, in batches, and an error
    for each that cannot (one bad file among thousands must not lose the others' scores)."""
    input_spec = trained.spec.input
    predictions: list[Prediction] = []
    unread: list[SpecError] = []
    for start in range(0, len(files), _BATCH):
        chunk, pixels = [], []
        for path in files[start:start + _BATCH]:
            try:
                pixels.append(read_image(path, input_spec.channels, input_spec.hw))
                chunk.append(path)
            except SpecError as error:
                unread.append(error)
        if not chunk:
            continue
        images = np.stack(pixels)
        # a stable sort ranks tied classes (common in bf16) in score order, as `eval`'s argmax picks
        # the first: topk may rank either first, and the top class would then not be eval's
        probabilities, indices = trained.predict(images).sort(dim=1, descending=True, stable=True)
        probabilities, indices = probabilities[:, :top], indices[:, :top]
        for path, row, columns in zip(chunk, probabilities.tolist(), indices.tolist()):
            ranked = [(trained.classes[i], p) for i, p in zip(columns, row)]
            predictions.append(Prediction(readable_name(str(path)), ranked))  # JSON refuses lone surrogates
    return predictions, unread


def prediction_line(prediction: Prediction, width: int) -> str:
    (best, probability), *others = prediction.top
    rest = f"  ({', '.join(f'{name} {100 * p:.1f}%' for name, p in others)})" if others else ""
    return f"{prediction.file:<{width}}  {best} {100 * probability:.1f}%{rest}"
