"""`blockspec.load_trained`: a checkpoint from Python predicts as the run evaluated it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import blockspec
from blockspec.cli import main
from blockspec.data import load_dataset
from tests.synthetic import tiny_spec_text, write_colour_folder


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-epoch run (short of 100 %) with a weight average and mirror views: the two things a hand-built
    model gets wrong (last.pt's `model` holds the raw weights; eval averages the views); in bf16
    where this CPU computes it, as training and eval then do."""
    folder = tmp_path_factory.mktemp("trained")
    data_root = write_colour_folder(folder / "data")
    spec = folder / "tiny.yaml"
    spec.write_text(tiny_spec_text(data_root, epochs=1, extra="  ema: 0.9\n  tta_flip: true\n"))
    out = folder / "run"
    with pytest.raises(SystemExit) as exit_info:  # a module's fixture has no capsys for run_cli
        main(["train", str(spec), "--out", str(out), "--workers", "0"])
    assert not exit_info.value.code
    return out


def test_predictions_reproduce_the_runs_last_test_accuracy(run: Path) -> None:
    trained = blockspec.load_trained(run / "last.pt")
    data = load_dataset("imagefolder", trained.spec.data.root)
    probabilities = trained.predict(data.test_images)
    assert probabilities.shape == (len(data.test_images), 4)
    assert torch.allclose(probabilities.sum(dim=1), torch.ones(len(data.test_images)))
    accuracy = 100.0 * float((probabilities.argmax(dim=1).numpy() == data.test_labels).mean())
    history = json.loads((run / "metrics.json").read_text())
    assert accuracy == pytest.approx(history[-1]["test_acc"])
    assert trained.epoch == 1 and not trained.model.training
    assert trained.classes == data.classes and trained.mean == pytest.approx(data.mean)
    x = trained.preprocess(data.test_images).contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), trained.info.autocast():  # the mirror views averaged in float32, as the run's evaluation does
        mirrored = ((trained.model(x).float() + trained.model(x.flip(3)).float()) / 2).softmax(dim=1)
    assert torch.allclose(probabilities, mirrored, atol=1e-6)


def test_the_weights_are_the_average_the_run_evaluated_not_the_raw_ones(run: Path) -> None:
    from blockspec.train.checkpoint import evaluated_weights

    payload = torch.load(run / "last.pt", weights_only=True)
    state = blockspec.load_trained(run).model.state_dict()  # the run directory means its last.pt
    average = evaluated_weights(payload)
    assert all(torch.equal(state[name], average[name]) for name in average)
    assert any(not torch.equal(payload["model"][name], average[name]) for name in average if name.endswith("weight"))


def test_one_image_read_with_pil_is_one_prediction(run: Path) -> None:
    trained = blockspec.load_trained(str(run / "best.pt"))
    image = next((Path(trained.spec.data.root) / "test").rglob("*.png"))
    with Image.open(image) as picture:
        pixels = np.asarray(picture.convert("RGB"))
    batch = trained.preprocess(pixels)
    assert batch.shape == (1, 3, 16, 16) and batch.dtype == torch.float32
    assert trained.predict(pixels).shape == (1, 4)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK"])
def test_a_pil_image_of_any_8_bit_mode_is_read_as_predict_reads_its_file(run: Path, tmp_path: Path, mode: str) -> None:
    """The command converted such images to the network's channels; the API refused them
    (gray: 16×16, RGBA: 16×16×4)."""
    from blockspec.predict import predict_files

    trained = blockspec.load_trained(run)
    picture = Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)).convert(mode)
    picture.save(tmp_path / ("image.jpg" if mode == "CMYK" else "image.png"))
    (from_file,), _ = predict_files(trained, [next(tmp_path.iterdir())], top=4)
    with Image.open(next(tmp_path.iterdir())) as opened:
        scores = trained.predict(opened)[0].tolist()
    assert dict(from_file.top) == dict(zip(trained.classes, scores))
    with pytest.raises(ValueError, match="I;16 pixels"):
        trained.predict(Image.new("I;16", (16, 16)))


@pytest.mark.parametrize(
    ("images", "found"),
    [(np.zeros((2, 16, 16, 3), dtype=np.float32), "got float32 of shape (2, 16, 16, 3)"),
     (np.zeros((2, 3, 16, 16), dtype=np.uint8), "got uint8 of shape (2, 3, 16, 16)"),
     (np.zeros((32, 32, 3), dtype=np.uint8), "got uint8 of shape (32, 32, 3)"),
     (np.zeros((5, 16, 16), dtype=np.uint8), "got uint8 of shape (5, 16, 16)"),
     (torch.zeros((2, 16, 16, 3)), "got float32 of shape (2, 16, 16, 3)")],
)
def test_images_of_another_form_are_refused_with_the_form_expected(run: Path, images: np.ndarray, found: str) -> None:
    trained = blockspec.load_trained(run / "last.pt")
    with pytest.raises(ValueError, match=r"expected uint8 of shape N×16×16×3") as error:
        trained.preprocess(images)
    assert found in str(error.value)


def test_a_file_that_is_no_checkpoint_names_the_argument(tmp_path: Path) -> None:
    (tmp_path / "notes.pt").write_text("hello")
    with pytest.raises(blockspec.SpecError, match=r"^checkpoint = .*notes\.pt.*not a file torch saved"):
        blockspec.load_trained(tmp_path / "notes.pt")
    with pytest.raises(blockspec.SpecError, match=r"^checkpoint = .*: no such checkpoint file"):
        blockspec.load_trained(tmp_path / "missing.pt")


def test_a_checkpoint_without_recorded_statistics_is_refused(run: Path, tmp_path: Path) -> None:
    from blockspec.train.checkpoint import save_atomic

    payload = torch.load(run / "best.pt", weights_only=True)
    del payload["mean"], payload["std"], payload["format"]
    save_atomic(payload, tmp_path / "old.pt")
    with pytest.raises(blockspec.SpecError, match="does not record its mean, std"):
        blockspec.load_trained(tmp_path / "old.pt")


def test_predict_command_scores_the_test_images_as_the_run_did(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.cli_helpers import run_cli

    test_folder = Path(blockspec.load_trained(run).spec.data.root) / "test"
    code, stdout, err = run_cli(["predict", str(test_folder), "--checkpoint", str(run), "--top", "2", "-f", "json"],
                                capsys)
    assert code == 0, err
    predictions = json.loads(stdout)
    assert len(predictions) == 32 and all(len(p["top"]) == 2 for p in predictions)
    right = [Path(p["file"]).parent.name == p["top"][0]["class"] for p in predictions]
    history = json.loads((run / "metrics.json").read_text())
    assert 100.0 * sum(right) / len(right) == pytest.approx(history[-1]["test_acc"])
    one = sorted(test_folder.rglob("*.png"))[0]
    code, stdout, _ = run_cli(["predict", str(one), "--checkpoint", str(run / "last.pt"), "--top", "9"], capsys)
    assert code == 0 and stdout.startswith(f"{one}  class") and stdout.count("%") == 4  # four classes at most


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda folder: Image.new("RGB", (8, 8)).save(folder / "small.png"),
         "small.png': is 8x8 but the network takes 16x16 images (its training images' size): resize it first"),
        (lambda folder: (folder / "notes.png").write_text("hello"), "notes.png': cannot read it as an image"),
        (lambda folder: (folder / "empty").mkdir(), "empty': the folder holds no images"),
    ],
)
def test_predict_names_the_image_it_cannot_score(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], make, says: str  # noqa: ANN001
) -> None:
    from tests.cli_helpers import run_cli

    make(tmp_path)
    target = tmp_path / "empty" if says.startswith("empty") else next(tmp_path.glob("*.png"))
    code, _, err = run_cli(["predict", str(target), "--checkpoint", str(run)], capsys)
    assert code == 2 and err.startswith("error: IMAGES = ") and says in err and "Traceback" not in err, err
    code, _, err = run_cli(["predict", str(tmp_path / "none.png"), "--checkpoint", str(run)], capsys)
    assert code == 2 and "none.png': no such file or folder" in err


def test_one_unreadable_file_loses_no_other_files_scores(run: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """It ended the run with its error alone: the scores of every good file were lost."""
    from tests.cli_helpers import run_cli

    test_folder = Path(blockspec.load_trained(run).spec.data.root) / "test"
    for index, image in enumerate(sorted(test_folder.rglob("*.png"))[:3]):
        (tmp_path / f"{index}.png").write_bytes(image.read_bytes())
    (tmp_path / "1b.png").write_text("not an image")
    Image.new("RGB", (8, 8)).save(tmp_path / "2b.png")
    code, stdout, err = run_cli(["predict", str(tmp_path), "--checkpoint", str(run), "-f", "json"], capsys)
    assert code == 2 and [Path(p["file"]).name for p in json.loads(stdout)] == ["0.png", "1.png", "2.png"]
    assert err.count("error: IMAGES = ") == 2 and "1b.png': cannot read it as an image" in err and "2b.png': is 8x8" in err
    code, stdout, err = run_cli(["predict", "/dev/null", "--checkpoint", str(run)], capsys)
    assert code == 2 and "'/dev/null': is neither a file nor a folder" in err


def test_a_photo_stored_sideways_is_read_upright_as_viewers_show_it(run: Path, tmp_path: Path) -> None:
    """An EXIF orientation was ignored: the same picture scored differently turned."""
    from blockspec.predict import predict_files

    pixels = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "upright.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned a quarter anticlockwise: viewers turn it back clockwise
    Image.fromarray(np.rot90(pixels, 1).copy()).save(tmp_path / "sideways.png", exif=exif)
    trained = blockspec.load_trained(run)
    (upright, sideways), unread = predict_files(trained, [tmp_path / "upright.png", tmp_path / "sideways.png"], top=4)
    assert upright.top == sideways.top and not unread
    data = load_dataset("imagefolder", str(_folder_of(tmp_path / "sideways.png", tmp_path / "data")))
    assert np.array_equal(data.train_images[0], pixels)  # training reads it upright too


def _folder_of(image: Path, root: Path) -> Path:
    for split in ("train", "test"):
        (root / split / "a").mkdir(parents=True)
        (root / split / "a" / image.name).write_bytes(image.read_bytes())
    return root


def test_a_gray_networks_images_may_come_without_their_channel_axis(tmp_path: Path) -> None:
    """PIL's gray images are H×W arrays: they were refused, and a batch's error showed a shape
    the caller never passed."""
    from blockspec.train.checkpoint import save_atomic

    spec = blockspec.parse_spec("name: g\ninput: {channels: 1, size: 12}\nclasses: 3\n"
                                "blocks:\n  C1: [conv: {out: 4}]\n  output: [gap: {}, fc: {out: 3}]\n")
    recorded = {"classes": ["a", "b", "c"], "mean": [0.5], "std": [0.2]}
    save_atomic({"model": blockspec.build_model(spec).state_dict(), "spec": spec.to_yaml(), **recorded, "epoch": 1},
                tmp_path / "g.pt")
    trained = blockspec.load_trained(tmp_path / "g.pt")
    pixels = np.arange(144, dtype=np.uint8).reshape(12, 12)
    assert trained.preprocess(pixels).shape == (1, 1, 12, 12)
    assert torch.equal(trained.predict(np.stack([pixels] * 5)), trained.predict(np.stack([pixels] * 5)[..., None]))
    assert repr(trained) == "<TrainedModel 'g': epoch 1, 3 classes, input 1×12×12, on cpu>"


def test_predict_finds_images_in_linked_folders_as_training_does(run: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from tests.cli_helpers import run_cli

    test_folder = Path(blockspec.load_trained(run).spec.data.root) / "test"
    (tmp_path / "held").mkdir()
    (tmp_path / "held" / "linked").symlink_to(test_folder / "class0", target_is_directory=True)
    code, stdout, err = run_cli(["predict", str(tmp_path / "held"), "--checkpoint", str(run)], capsys)
    assert code == 0 and len(stdout.splitlines()) == 8, err


@pytest.mark.parametrize(("fmt", "kind"), [("torchscript", "a TorchScript export"), ("pt2", "a torch.export program (.pt2)")])
def test_an_exported_network_given_as_a_checkpoint_is_named_as_such(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str, kind: str
) -> None:
    """It was called "cut short or damaged"."""
    from tests.cli_helpers import run_cli

    exported = tmp_path / f"model.{fmt}"
    assert run_cli(["export", "--checkpoint", str(run), "--format", fmt, "--out", str(exported)], capsys)[0] == 0
    images = Path(blockspec.load_trained(run).spec.data.root) / "test"
    code, _, err = run_cli(["predict", str(images), "--checkpoint", str(exported)], capsys)
    assert code == 2 and f"it is {kind} of a network (`blockspec export`), not a checkpoint; give the run's best.pt" in err and "Warning" not in err


def test_a_checkpoint_without_its_spec_is_refused_by_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from blockspec.train.checkpoint import FORMAT
    from tests.cli_helpers import run_cli

    torch.save({"format": FORMAT, "model": {}}, tmp_path / "edited.pt")
    code, _, err = run_cli(["eval", "--checkpoint", str(tmp_path / "edited.pt")], capsys)
    assert code == 2 and "a blockspec checkpoint without its spec or weights" in err and "bug" not in err


@pytest.mark.parametrize(("field", "value", "says"), [
    ("ema", [1, 2], "ema is not a mapping"), ("epoch", "abc", "epoch is not a count"),
    ("mean", 5, "mean is not a list of numbers"), ("std", [float("nan")] * 3, "std is not a list of numbers"),
    ("optimizer", {"x": 1}, "optimizer is not an optimizer's state"), ("rng", 5, "rng is not the random generators'"),
])
def test_a_checkpoint_field_of_the_wrong_type_is_refused_by_name(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], field: str, value: object, says: str
) -> None:
    """Each failed deep inside predict or --resume as a bug in blockspec (exit 70), or (a NaN
    mean) was taken silently."""
    from tests.cli_helpers import run_cli

    payload = torch.load(run / "last.pt", weights_only=True)
    payload[field] = value
    torch.save(payload, tmp_path / "edited.pt")
    code, _, err = run_cli(["eval", "--checkpoint", str(tmp_path / "edited.pt")], capsys)
    assert code == 2 and says in err and "bug" not in err, err


def test_an_empty_batch_predicts_no_rows(run: Path) -> None:
    trained = blockspec.load_trained(run)
    assert trained.predict(np.zeros((0, 16, 16, 3), dtype=np.uint8)).shape == (0, 4)


def test_export_writes_through_a_link_and_refuses_a_device(run: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Both were replaced by a regular file (as root, /dev/null too)."""
    import os

    from tests.cli_helpers import run_cli

    (tmp_path / "target.pt").write_bytes(b"")
    (tmp_path / "link.pt").symlink_to(tmp_path / "target.pt")
    assert run_cli(["export", "--checkpoint", str(run), "--out", str(tmp_path / "link.pt")], capsys)[0] == 0
    assert (tmp_path / "link.pt").is_symlink() and (tmp_path / "target.pt").stat().st_size > 0
    os.mkfifo(tmp_path / "pipe")
    code, _, err = run_cli(["export", "--checkpoint", str(run), "--out", str(tmp_path / "pipe")], capsys)
    assert code == 2 and "is not a regular file (a device, a pipe or a socket)" in err


def test_a_path_too_long_for_the_file_system_is_the_users_error(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.cli_helpers import run_cli

    code, _, err = run_cli(["predict", "/tmp/" + "a" * 300 + ".png", "--checkpoint", str(run)], capsys)
    assert code == 2 and "a name in it is too long for the file system" in err and "bug" not in err


@pytest.mark.parametrize("command", ["predict", "eval"])
def test_a_report_format_other_than_table_or_json_is_refused(run: Path, command: str,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from tests.cli_helpers import run_cli

    images = [str(Path(blockspec.load_trained(run).spec.data.root) / "test")] if command == "predict" else []
    code, _, err = run_cli([command, *images, "--checkpoint", str(run), "--format", "xml"], capsys)
    assert code == 2 and err == "error: --format = 'xml': allowed: table, json\n"


def test_export_through_a_link_loop_does_not_crash(run: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Resolving the link raised RuntimeError (exit 70); a loop leads nowhere, so the file is
    written where the loop was entered."""
    from tests.cli_helpers import run_cli

    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    code, _, err = run_cli(["export", "--checkpoint", str(run), "--out", str(tmp_path / "a")], capsys)
    assert code == 0 and "bug" not in err, err


def test_eval_blames_the_edit_that_changed_the_input_not_the_data(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A network ending in global pooling takes weights at any size: an edited input size does
    not fit the data, and the edit is to blame, not the data the checkpoint was trained on."""
    from tests.cli_helpers import run_cli

    root = blockspec.load_trained(run).spec.data.root
    code, _, err = run_cli(["eval", "--checkpoint", str(run), "--data-root", root, "--set", "input.size=24"], capsys)
    assert code == 2 and "with --set input.size=24: input: the spec expects 3×24×24 images" in err, err
    assert "change `input` (channels, size) or the data set" in err and "--data-root =" not in err


def test_library_remarks_do_not_come_before_the_answer(run: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """torch warned about a pickle's protocol, and PIL about a huge image, above blockspec's message."""
    import pickle
    import warnings

    from tests.cli_helpers import run_cli

    with open(tmp_path / "notes.pkl", "wb") as file:
        pickle.dump({"a": 1}, file, protocol=4)
    (tmp_path / "huge").mkdir()
    Image.new("L", (12000, 12000)).save(tmp_path / "huge" / "big.png")
    commands = (["eval", "--checkpoint", str(tmp_path / "notes.pkl")],
                ["predict", str(tmp_path / "huge"), "--checkpoint", str(run)])
    for command, says in zip(commands, ("error: --checkpoint = ", "error: IMAGES = ")):
        with warnings.catch_warnings(record=True) as remarks:
            warnings.simplefilter("always")
            code, _, err = run_cli(command, capsys)
        assert code == 2 and err.startswith(says), err
        assert [str(remark.message) for remark in remarks] == []


def test_preprocess_keeps_rows_as_rows_and_uses_the_runs_statistics(run: Path) -> None:
    """A random image, unlike the flat colours of the run's data, shows a swap of height and width."""
    trained = blockspec.load_trained(run)
    image = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    mean = torch.tensor(trained.mean).view(1, 3, 1, 1)
    std = torch.tensor(trained.std).view(1, 3, 1, 1)
    expected = (torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255 - mean) / std
    assert torch.allclose(trained.preprocess(image), expected, atol=1e-5)


def test_predict_scores_every_file_across_its_batches(run: Path, tmp_path: Path) -> None:
    from blockspec.predict import _BATCH, predict_files

    trained = blockspec.load_trained(run)
    files = [tmp_path / f"{index:04d}.png" for index in range(_BATCH + 3)]  # a full batch and three more
    for index, file in enumerate(files):
        Image.fromarray(np.full((16, 16, 3), index % 256, dtype=np.uint8)).save(file)
    predictions, unread = predict_files(trained, files, top=2)
    assert [p.file for p in predictions] == [str(f) for f in files] and not unread
    expected = trained.predict(np.stack([np.full((16, 16, 3), i % 256, dtype=np.uint8) for i in range(len(files))]))
    assert [p.top[0][0] for p in predictions] == [trained.classes[i] for i in expected.argmax(1).tolist()]


def test_best_pt_holds_the_weights_the_run_evaluated(run: Path) -> None:
    """One epoch, so the best is the last: best.pt's weights are last.pt's average, not its raw ones."""
    from blockspec.train.checkpoint import evaluated_weights

    best = torch.load(run / "best.pt", weights_only=True)["model"]
    last = torch.load(run / "last.pt", weights_only=True)
    average = evaluated_weights(last)
    assert best.keys() == average.keys() and all(torch.equal(best[name], average[name]) for name in best)
    assert any(not torch.equal(best[name], last["model"][name]) for name in best if name.endswith("weight"))


def test_evals_per_class_accuracy_is_each_classs_recall(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Of the images of class c, the share predicted as c (not: of the images predicted as c,
    the share that are c)."""
    from tests.cli_helpers import run_cli

    code, stdout, err = run_cli(["eval", "--checkpoint", str(run / "best.pt"), "-f", "json"], capsys)
    assert code == 0, err
    trained = blockspec.load_trained(run / "best.pt")
    data = load_dataset("imagefolder", trained.spec.data.root)
    predicted = trained.predict(data.test_images).argmax(1).numpy()
    recall = {name: 100.0 * float(np.mean(predicted[data.test_labels == c] == c)) for c, name in enumerate(data.classes)}
    precision = {name: 100.0 * float(np.mean(data.test_labels[predicted == c] == c)) if np.any(predicted == c) else None
                 for c, name in enumerate(data.classes)}
    assert json.loads(stdout)["per_class"] == pytest.approx(recall)
    assert recall != precision  # else the run's predictions could not tell the two apart


def test_predict_scores_in_evaluation_mode_and_leaves_the_mode_as_it_was(run: Path) -> None:
    """After fine-tuning `trained.model` in a notebook it is in training mode: predict scored
    with batch statistics and moved the running ones."""
    trained = blockspec.load_trained(run)
    images = np.random.default_rng(0).integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
    expected = trained.predict(images)
    state = {name: value.clone() for name, value in trained.model.state_dict().items()}
    trained.model.train()
    frozen = next(module for module in trained.model.modules() if isinstance(module, torch.nn.BatchNorm2d)).eval()
    assert torch.equal(trained.predict(images), expected)
    assert trained.model.training and not frozen.training  # each module's mode as it was
    assert all(torch.equal(value, state[name]) for name, value in trained.model.state_dict().items())


def test_images_as_a_list_of_single_images_and_slips_named(run: Path) -> None:
    trained = blockspec.load_trained(run)
    batch = np.random.default_rng(1).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    mixed = [batch[0], torch.from_numpy(batch[1]), Image.fromarray(batch[2])]
    assert torch.equal(trained.predict(mixed), trained.predict(batch))
    assert trained.predict([]).shape == (0, 4)
    for given, named in [("cat.png", "str"), (Path("cat.png"), "PosixPath"), (None, "NoneType"), (["cat.png"], "str")]:
        with pytest.raises(TypeError, match=rf"^images: expected pixels .*, got {named}; for image files, open them"):
            trained.predict(given)
    with pytest.raises(ValueError, match=r"^images: a list of images of one size, got shapes \(16, 16, 3\), \(20, 16, 3\)$"):
        trained.predict([batch[0], np.zeros((20, 16, 3), dtype=np.uint8)])
    with pytest.raises(TypeError, match=r"^checkpoint: expected a checkpoint file or run directory path, got int$"):
        blockspec.load_trained(3)
    with pytest.raises(TypeError, match=r"^device: expected a name such as 'cpu'"):
        blockspec.load_trained(run, device=0)
    with pytest.raises(blockspec.SpecError, match=r"^device = 'gpu': unknown device; allowed: "):
        blockspec.load_trained(run, device="gpu")


def test_tied_classes_are_ranked_as_evals_argmax_counts(run: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Ties are common in bf16: `topk` put a later class first where `eval`'s argmax (and the
    documented `probabilities.argmax()`) takes the first, so `predict` over a test folder did
    not reproduce eval's accuracy. An output layer of zeros ties every class."""
    from blockspec.train.checkpoint import save_atomic
    from tests.cli_helpers import run_cli

    payload = torch.load(run / "best.pt", weights_only=True)
    for weights in (payload["model"], payload.get("ema") or {}):
        for name, value in weights.items():
            if name.startswith("output.") and value.is_floating_point():
                value.zero_()
    save_atomic(payload, tmp_path / "tied.pt")
    trained = blockspec.load_trained(tmp_path / "tied.pt")
    image = next((Path(trained.spec.data.root) / "test").rglob("*.png"))
    code, stdout, err = run_cli(["predict", str(image), "--checkpoint", str(tmp_path / "tied.pt"), "--top", "4",
                                 "-f", "json"], capsys)
    assert code == 0, err
    ranked = [entry["class"] for entry in json.loads(stdout)[0]["top"]]
    assert ranked == list(trained.classes)
    assert int(trained.predict(np.zeros((1, 16, 16, 3), dtype=np.uint8)).argmax()) == 0



def test_predict_normalises_a_batch_at_a_time_not_every_image_at_once(run: Path) -> None:
    """A notebook scoring a large set held a float copy of all of it, four bytes a pixel (on the
    GPU, where there is one): no single allocation may now be a sizeable part of that copy."""
    from torch.profiler import ProfilerActivity, profile

    trained = blockspec.load_trained(run)
    images = np.random.default_rng(0).integers(0, 256, (2000, 16, 16, 3), dtype=np.uint8)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        probabilities = trained.predict(images)
    largest = max(event.self_cpu_memory_usage for event in profiler.events())
    assert largest < 4 * images.size // 8, f"{largest:,} bytes allocated at once"
    assert torch.equal(probabilities, trained.predict(list(images)))
