"""The batched tensor augmentation matches albumentations' transforms."""

from __future__ import annotations

import albumentations as A
import numpy as np
import pytest
import torch

from blockspec.data import build_augment, read_augment, seed_augment
from blockspec.data.augment import mean_fill
from blockspec.data.batched import augment_batch
from blockspec.data.batched_plan import batched_refusal, plan_batched
from blockspec.data.device_loader import DeviceLoader


def smooth_image(size: int = 32) -> np.ndarray:
    """A smooth colour gradient, so interpolation differences stay small."""
    rows, cols = np.mgrid[0:size, 0:size]
    image = np.stack([rows * 6, cols * 6, (rows + cols) * 3], axis=-1)
    return image.clip(0, 255).astype(np.uint8)


def plan_for(entries: list) -> object:
    plan = plan_batched(read_augment(entries))
    assert plan is not None
    return plan


def run(plan: object, images: np.ndarray, seed: int = 0) -> np.ndarray:
    batch = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
    out = augment_batch(batch, plan, torch.Generator().manual_seed(seed), (120, 120, 120))
    return out.numpy().transpose(0, 2, 3, 1)


@pytest.mark.parametrize(
    "limits",
    [
        {"shift_limit": (0.1, 0.1), "scale_limit": 0, "rotate_limit": 0},
        {"shift_limit": 0, "scale_limit": (0.2, 0.2), "rotate_limit": 0},
        {"shift_limit": 0, "scale_limit": 0, "rotate_limit": (20, 20)},
        {"shift_limit": (-0.05, -0.05), "scale_limit": (-0.1, -0.1), "rotate_limit": (-15, -15)},
    ],
)
def test_fixed_affine_equals_albumentations(limits: dict) -> None:
    """With degenerate ranges both sides apply the same warp; pixels agree closely."""
    image = smooth_image()
    ours = run(plan_for([{"ShiftScaleRotate": {**limits, "p": 1.0}}]), image[None])[0]
    theirs = A.ShiftScaleRotate(**limits, p=1.0)(image=image)["image"].astype(np.float32)
    inner = (slice(4, -4), slice(4, -4))
    assert np.abs(ours[inner] - theirs[inner]).mean() < 3.0


def smooth_rectangle(height: int, width: int) -> np.ndarray:
    rows, cols = np.mgrid[0:height, 0:width]
    image = np.stack([rows * 5, cols * 5, (rows + cols) * 3], axis=-1)
    return image.clip(0, 255).astype(np.uint8)


@pytest.mark.parametrize(
    "args",
    [
        {"scale": {"x": 1.2, "y": 0.9}},
        {"translate_px": {"x": 3, "y": -2}},
        {"translate_percent": {"x": 0.1, "y": -0.05}},
        {"rotate": 20, "scale": {"x": 1.1, "y": 0.95}},
        {"rotate": -15, "scale": 1.1, "translate_px": 2, "border_mode": 4},
    ],
)
@pytest.mark.parametrize("shape", [(32, 32), (24, 40)])
def test_fixed_albumentations_affine_equals_albumentations(args: dict, shape: tuple[int, int]) -> None:
    """Affine's own arguments, per-axis scales and non-square images warp as albumentations does."""
    image = smooth_rectangle(*shape)
    ours = run(plan_for([{"Affine": {**args, "p": 1.0}}]), image[None])[0]
    theirs = A.Affine(**args, p=1.0)(image=image)["image"].astype(np.float32)
    inner = (slice(4, -4), slice(4, -4))
    assert np.abs(ours[inner] - theirs[inner]).mean() < 3.0


def bright_extent(images: np.ndarray) -> np.ndarray:
    """Width / height of the bright square in each image."""
    bright = images[..., 0] > 127
    return bright.any(axis=1).sum(axis=1) / bright.any(axis=2).sum(axis=1)


def test_shift_scale_rotate_scales_each_axis_apart_like_albumentations() -> None:
    """albumentations 2.x draws ShiftScaleRotate's x and y scales independently; so do we."""
    square = np.zeros((32, 32, 3), dtype=np.uint8)
    square[8:24, 8:24] = 255
    limits = {"shift_limit": 0, "scale_limit": 0.3, "rotate_limit": 0, "p": 1.0}
    count = 4000
    ours = np.log(bright_extent(run(plan_for([{"ShiftScaleRotate": limits}]), np.repeat(square[None], count, 0))))
    transform = A.Compose([A.ShiftScaleRotate(**limits)])
    seed_augment(transform, 1)  # seeded like ours: the test gives the same verdict every run
    theirs = np.log(bright_extent(np.stack([transform(image=square)["image"] for _ in range(count)])))
    assert theirs.std() > 0.1  # the reference really is anisotropic
    assert abs(ours.std() / theirs.std() - 1) < 0.1
    # means of two samples of the same distribution differ by < 4 standard errors but 1 time in 15,000
    standard_error = np.sqrt((ours.var() + theirs.var()) / count)
    assert abs(ours.mean() - theirs.mean()) < 4 * standard_error


def test_shift_only_shift_scale_rotate_and_affine_are_one_plan() -> None:
    """The same warp spelt either way is the same plan, so it draws the same random numbers."""
    shift_scale_rotate = plan_for([{"ShiftScaleRotate": {"shift_limit": 0.125, "scale_limit": 0,
                                                          "rotate_limit": 0, "p": 1.0}}])
    affine = plan_for([{"Affine": {"translate_percent": [-0.125, 0.125], "p": 1.0}}])
    assert shift_scale_rotate == affine


def column_shifts(images: np.ndarray) -> np.ndarray:
    """The whole-pixel x shift of each smooth_image warp, read from its centre pixel's column."""
    return 16 - np.round(images[:, 16, 16, 1].astype(float) / 6).astype(int)


def test_percent_shifts_are_drawn_like_albumentations() -> None:
    """The flagship's translate_percent ±0.125 is truncated to whole pixels by albumentations:
    shifts of -3..3, 0 twice as often as the others; the batched path must draw the same."""
    entries = [{"Affine": {"translate_percent": [-0.125, 0.125], "p": 1.0}}]
    image, count = smooth_image(), 4000
    batched = column_shifts(run(plan_for(entries), np.repeat(image[None], count, 0)))
    transform = A.Compose([A.Affine(translate_percent=(-0.125, 0.125), p=1.0)])
    seed_augment(transform, 0)
    reference = column_shifts(np.stack([transform(image=image)["image"] for _ in range(count)]))
    values = np.arange(-3, 4)
    for shifts in (batched, reference):
        assert set(np.unique(shifts)) == set(values)
        assert abs((shifts == 0).mean() - 0.25) < 0.03
    batched_share = np.array([(batched == v).mean() for v in values])
    reference_share = np.array([(reference == v).mean() for v in values])
    assert np.abs(batched_share - reference_share).max() < 0.03


def test_flip_probability_and_exactness() -> None:
    image = smooth_image()
    flipped = run(plan_for([{"HorizontalFlip": {"p": 1.0}}]), image[None])[0]
    assert (flipped == image[:, ::-1]).all()
    many = run(plan_for([{"HorizontalFlip": {"p": 0.5}}]), np.repeat(image[None], 2000, 0))
    rate = (many[:, 0, 0, 1] != image[0, 0, 1]).mean()
    assert 0.45 < rate < 0.55


def test_cutout_is_one_mean_hole_inside_the_image() -> None:
    plan = plan_for([{"CoarseDropout": {"num_holes_range": [1, 1], "hole_height_range": [16, 16],
                                        "hole_width_range": [16, 16], "fill": "mean", "p": 1.0}}])
    images = np.full((500, 32, 32, 3), 7, dtype=np.uint8)
    out = run(plan, images)
    holes = (out == 120).all(axis=-1)
    assert (holes.sum(axis=(1, 2)) == 256).all()
    tops = holes.any(axis=2).argmax(axis=1)
    lefts = holes.any(axis=1).argmax(axis=1)
    assert tops.min() == 0 and tops.max() == 16 and lefts.min() == 0 and lefts.max() == 16
    assert abs(tops.mean() - 8) < 1


@pytest.mark.parametrize(
    ("entries", "reason"),
    [
        ([{"RandomBrightnessContrast": {"p": 0.5}}],
         "data.augment[0].RandomBrightnessContrast: RandomBrightnessContrast has no batched equivalent"),
        ([{"ShiftScaleRotate": {"border_mode": 3}}],  # BORDER_WRAP
         "data.augment[0].ShiftScaleRotate.border_mode = 3: batched borders are 0 (constant), 2 (reflect) and 4"),
        ([{"HorizontalFlip": {}}, {"Affine": {"translate_percent": 0.1, "interpolation": 0}}],
         "data.augment[1].Affine.interpolation = 0: the batched warp is bilinear (1)"),
        ([{"Affine": {"shear": 10}}], "data.augment[0].Affine.shear: the batched warp does not shear"),
        ([{"Affine": {"scale": [0.8, 1.2], "balanced_scale": True}}],
         "data.augment[0].Affine.balanced_scale = true: not mirrored"),
        ([{"CoarseDropout": {"hole_height_range": [0.1, 0.3]}}],
         "data.augment[0].CoarseDropout.hole_height_range = [0.1, 0.3]: fractions of the side; batched holes take sizes in pixels"),
        ([{"CoarseDropout": {}}],
         "data.augment[0].CoarseDropout.hole_height_range = [0.1, 0.2] (its default): fractions of the side; batched holes"),
        ([{"CoarseDropout": {"hole_height_range": [4, 4], "hole_width_range": [4, 4], "fill": "random"}}],
         "data.augment[0].CoarseDropout.fill = 'random': batched holes take"),
        ([{"HorizontalFlip": {}}, {"HorizontalFlip": {"p": 0.2}}], "data.augment[1].HorizontalFlip: a second HorizontalFlip"),
        ([{"Affine": {}}, {"ShiftScaleRotate": {}}], "data.augment[1].ShiftScaleRotate: a second Affine or ShiftScaleRotate"),
        ([{"CoarseDropout": {"hole_height_range": [4, 4], "hole_width_range": [4, 4]}}, {"Affine": {}}],
         "data.augment[0].CoarseDropout comes before the warp at data.augment[1]"),
        ([{"Affine": {"rotate": [0, 20]}}, {"HorizontalFlip": {}}],
         "data.augment[1].HorizontalFlip comes after the warp at data.augment[0], whose rotation or x shift"),
    ],
)
def test_unsupported_transforms_fall_back_naming_the_entry_and_argument(entries: list, reason: str) -> None:
    augment = read_augment(entries)
    assert plan_batched(augment) is None
    assert reason in batched_refusal(augment)


def test_a_cutouts_mask_fill_does_not_keep_it_off_the_batched_path() -> None:
    """blockspec passes no masks, so CoarseDropout's fill_mask changes nothing it draws."""
    holes = {"num_holes_range": [1, 1], "hole_height_range": [8, 8], "hole_width_range": [8, 8], "fill": 7}
    assert plan_for([{"CoarseDropout": {**holes, "fill_mask": 0}}]) == plan_for([{"CoarseDropout": holes}])


def test_device_loader_covers_the_data_once_per_epoch_and_repeats_with_its_seed() -> None:
    images = np.arange(50 * 4 * 4 * 3, dtype=np.int64).reshape(50, 4, 4, 3).astype(np.uint8)
    labels = np.arange(50)
    loader = DeviceLoader(images, labels, 8, torch.device("cpu"), None, (0.5, 0.5, 0.5), True, 3)
    seen = torch.cat([y for _, y in loader])
    assert sorted(seen.tolist()) == list(range(50)) and len(loader) == 7
    loader.generator.manual_seed(3)
    again = torch.cat([y for _, y in loader])
    assert torch.equal(seen, again)


@pytest.mark.parametrize("border_mode", [2, 4])  # OpenCV's BORDER_REFLECT and BORDER_REFLECT_101
def test_reflected_borders_equal_albumentations_to_the_edge(border_mode: int) -> None:
    """Whole-pixel shifts move no pixel off the grid, so every pixel must agree, border included."""
    image = smooth_rectangle(24, 40)
    args = {"translate_px": {"x": 3, "y": -2}, "border_mode": border_mode, "p": 1.0}
    ours = run(plan_for([{"Affine": args}]), image[None])[0]
    theirs = A.Affine(**args)(image=image)["image"].astype(np.float32)
    assert np.abs(ours - theirs).max() <= 0.5


def test_border_fill_is_read_per_channel_and_saturated_like_opencv() -> None:
    """A fill above 255 saturates; a fill listing fewer values than channels pads with 0."""
    image = smooth_rectangle(16, 16)
    for fill in (300, [10, 20]):
        args = {"translate_px": {"x": 4, "y": 0}, "fill": fill, "p": 1.0}
        ours = run(plan_for([{"Affine": args}]), image[None])[0]
        theirs = A.Affine(**args)(image=image)["image"].astype(np.float32)
        assert np.abs(ours - theirs).max() <= 0.5


def test_fractional_pixel_shift_bounds_truncate_like_albumentations() -> None:
    """albumentations draws randint(int(low), int(high)): ±2.5 pixels means -2..2."""
    fractional = plan_for([{"Affine": {"translate_px": [-2.5, 2.5], "p": 1.0}}])
    whole = plan_for([{"Affine": {"translate_px": [-2, 2], "p": 1.0}}])
    assert fractional == whole


def test_hole_sizes_are_capped_at_the_image_like_albumentations() -> None:
    """A height range reaching past the image draws sizes up to the image's height only."""
    args = {"num_holes_range": [1, 1], "hole_height_range": [16, 64], "hole_width_range": [4, 4],
            "fill": 0, "p": 1.0}
    images = np.full((3000, 32, 32, 3), 200, dtype=np.uint8)
    ours = (run(plan_for([{"CoarseDropout": args}]), images)[..., 0] == 0).any(axis=2).sum(axis=1)
    transform = A.Compose([A.CoarseDropout(**args)])
    seed_augment(transform, 0)
    theirs = np.array([(transform(image=image)["image"][..., 0] == 0).any(axis=1).sum() for image in images])
    for heights in (ours, theirs):
        assert heights.min() == 16 and heights.max() == 32
    standard_error = np.sqrt((ours.var() + theirs.var()) / len(images))
    assert abs(ours.mean() - theirs.mean()) < 4 * standard_error


def test_a_flip_after_the_warp_is_mirrored_only_when_the_orders_agree() -> None:
    """Flip·warp is warp'·flip with the rotation and x shift negated: the same images in
    distribution only when those ranges are symmetric about 0."""
    flip = {"HorizontalFlip": {"p": 0.5}}
    symmetric = {"Affine": {"rotate": [-20, 20], "translate_px": {"x": [-3, 3], "y": [0, 2]}, "p": 1.0}}
    assert plan_for([symmetric, flip]) == plan_for([flip, symmetric])
    for lopsided in ({"Affine": {"rotate": [0, 20], "p": 1.0}}, {"Affine": {"translate_px": {"x": [2, 2], "y": 0}}}):
        assert plan_batched(read_augment([lopsided, flip])) is None
        assert plan_batched(read_augment([flip, lopsided])) is not None


def test_the_previews_batched_versions_are_the_batched_paths_images() -> None:
    from blockspec.data.preview import batched_versions

    image = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    versions = batched_versions(plan_for([{"HorizontalFlip": {"p": 1.0}}]), (0, 0, 0), seed=0)(image, 3)
    assert len(versions) == 3 and all(v.dtype == np.uint8 and np.array_equal(v, image[:, ::-1]) for v in versions)


def test_pixel_shifts_reach_both_bounds_like_albumentations() -> None:
    """translate_px [-2, 2] draws randint(-2, 2): five whole shifts, each a fifth of the time."""
    entries = [{"Affine": {"translate_px": {"x": [-2, 2], "y": 0}, "p": 1.0}}]
    image, count = smooth_image(), 4000
    ours = column_shifts(run(plan_for(entries), np.repeat(image[None], count, 0)))
    transform = A.Compose([A.Affine(translate_px={"x": (-2, 2), "y": 0}, p=1.0)])
    seed_augment(transform, 0)
    theirs = column_shifts(np.stack([transform(image=image)["image"] for _ in range(count)]))
    for shifts in (ours, theirs):
        assert set(np.unique(shifts)) == {-2, -1, 0, 1, 2}
        assert all(abs((shifts == v).mean() - 0.2) < 0.03 for v in range(-2, 3))


def test_the_number_of_holes_is_drawn_from_the_whole_range() -> None:
    """num_holes_range [1, 3] of 1-pixel holes: 1, 2 or 3 holes, a third of the images each."""
    args = {"num_holes_range": [1, 3], "hole_height_range": [1, 1], "hole_width_range": [1, 1], "fill": 0, "p": 1.0}
    images = np.full((3000, 32, 32, 3), 200, dtype=np.uint8)
    holes = (run(plan_for([{"CoarseDropout": args}]), images)[..., 0] == 0).sum(axis=(1, 2))
    # two holes on one pixel (chance < 0.3 %) count as one
    assert abs((holes == 1).mean() - 1 / 3) < 0.04 and abs((holes == 3).mean() - 1 / 3) < 0.04


def test_keep_ratio_scales_both_axes_by_one_draw() -> None:
    square = np.zeros((32, 32, 3), dtype=np.uint8)
    square[8:24, 8:24] = 255
    ratios = {}
    for keep in (True, False):
        plan = plan_for([{"Affine": {"scale": [0.7, 1.3], "keep_ratio": keep, "p": 1.0}}])
        ratios[keep] = np.log(bright_extent(run(plan, np.repeat(square[None], 500, 0))))
    assert ratios[True].std() < 0.03 < 0.1 < ratios[False].std()


def test_unset_probabilities_are_albumentations_defaults() -> None:
    holes = {"hole_height_range": [4, 4], "hole_width_range": [4, 4]}
    plan = plan_for([{"HorizontalFlip": {}}, {"CoarseDropout": holes}])
    assert plan.flip_p == A.HorizontalFlip().p == 0.5
    assert plan.cutout.p == A.CoarseDropout(**holes).p == 0.5


def test_mean_fill_is_the_rounded_mean_the_albumentations_path_uses() -> None:
    mean = (0.4914, 0.4822, 0.4465)  # CIFAR-10's: 125.3, 122.96, 113.86 in uint8 units
    [dropout] = build_augment([{"CoarseDropout": {"fill": "mean"}}], mean).transforms
    assert mean_fill(mean) == tuple(dropout.fill) == (125, 123, 114)


def test_device_loader_fills_holes_with_the_data_sets_mean() -> None:
    plan = plan_for([{"CoarseDropout": {"num_holes_range": [1, 1], "hole_height_range": [4, 4],
                                        "hole_width_range": [4, 4], "fill": "mean", "p": 1.0}}])
    images = np.full((8, 8, 8, 3), 7, dtype=np.uint8)
    loader = DeviceLoader(images, np.zeros(8), 8, torch.device("cpu"), plan, (0.5, 0.25, 1.0), False, 0)
    [(batch, _)] = list(loader)
    filled = batch.permute(0, 2, 3, 1).reshape(-1, 3)
    filled = filled[(filled != 7).any(1)]
    assert len(filled) == 8 * 16 and (filled == torch.tensor([128.0, 64.0, 255.0])).all()


def test_device_loader_drops_only_a_lone_last_image() -> None:
    images = np.zeros((17, 4, 4, 3), dtype=np.uint8)
    loader = DeviceLoader(images, np.arange(17), 8, torch.device("cpu"), None, (0.5,) * 3, True, 0)
    assert len(loader) == 2 and [len(y) for _, y in loader] == [8, 8]
    loader = DeviceLoader(images[:16], np.arange(16), 8, torch.device("cpu"), None, (0.5,) * 3, True, 0)
    assert len(loader) == 2 and [len(y) for _, y in loader] == [8, 8]


def test_copies_to_a_device_are_asynchronous_only_from_pinned_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """An asynchronous copy from pageable memory to Apple's MPS can read the memory after it is
    freed and reused (pytorch/pytorch#189690): the random draws and the loader's batches went so.
    Shown here on the meta device, which like MPS takes no pinned memory."""
    from blockspec.data.batched import to_device
    from blockspec.train.device import DeviceInfo
    from blockspec.train.loop import Batches

    copies: list[bool] = []
    original = torch.Tensor.to

    def recorded(tensor: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        copies.append(kwargs.get("non_blocking", False))
        return original(tensor, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", recorded)
    meta = torch.device("meta")
    assert to_device(torch.rand(4), meta).device == meta
    x, y = Batches(DeviceInfo(meta, None, False, pin_memory=False), (0.5,) * 3, (0.25,) * 3)(
        torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.zeros(2, dtype=torch.long))
    assert x.device == y.device == meta
    assert copies and not any(copies)


@pytest.mark.parametrize("loader", ["auto", "gpu"])
def test_a_data_set_crowding_the_gpu_stays_in_host_memory(monkeypatch: pytest.MonkeyPatch, loader: str) -> None:
    """The batched path put the whole data set on the GPU unasked: past its free memory (large
    images on a 4 GB GPU) the run ran out of memory before its first step, blaming the batch."""
    from blockspec.errors import SpecError
    from blockspec.load import parse_spec
    from blockspec.train.data_path import make_run_loaders
    from blockspec.train.device import DeviceInfo
    from blockspec.train.distributed import Ranks
    from blockspec.train.options import RunOptions
    from tests.epoch_images import eight_pixel_spec, row_labelled_data

    spec = parse_spec(eight_pixel_spec("  augment:\n    - HorizontalFlip: {p: 0.5}", epochs=1), "crowd.yaml")
    data = row_labelled_data(20)
    size = data.train_images.nbytes + data.test_images.nbytes
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (2 * size - 1, 4 * 2**30))  # just under twice
    gpu = DeviceInfo(torch.device("cuda"), None, False, pin_memory=False)
    options = RunOptions(workers=0, loader=loader)
    if loader == "gpu":
        with pytest.raises(SpecError, match=r"^--loader = 'gpu': the data set's images \(0\.00 GiB as uint8\) would take "
                                            r"more than half of the 0\.00 GiB free on the GPU; use --loader albumentations$"):
            make_run_loaders(spec, data, options, gpu, Ranks())
        return
    loaders = make_run_loaders(spec, data, options, gpu, Ranks())
    assert loaders.path == "per-image albumentations"
    assert loaders.unbatched == ("augmentation runs per image in albumentations, not batched: the data set's images "
                                 "(0.00 GiB as uint8) would take more than half of the 0.00 GiB free on the GPU")
