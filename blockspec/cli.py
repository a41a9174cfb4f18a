"""The `blockspec` command line: parse arguments, call the library, render. Nothing more."""

from __future__ import annotations

import errno
import io
import os
import sys
from collections.abc import Callable, Iterator
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional, TypeVar

import typer
from rich.console import Console

from blockspec.atomic import check_output_file, write_output
from blockspec.errors import SpecError, fail, is_out_of_memory
from blockspec.fields import INT_LIMIT
from blockspec.launch import launched_rank  # the one rule for several processes, which train's follow too

if TYPE_CHECKING:
    from blockspec.rules import RuleResult
    from blockspec.spec import Spec
    from blockspec.summary import Summary
    from blockspec.verify import Verification

app = typer.Typer(
    name="blockspec",
    help="Declarative compact CNNs: YAML spec → exact layer table, rule checks, training.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)



def _one_command_a_process(args: list[str]) -> None:
    """Under torchrun every process runs the command: only `train` divides its work between
    them; any other would print its whole output once a process. (A WORLD_SIZE without a RANK,
    as a batch system may export for a whole job, is no launch; help is help anywhere.)"""
    command = next((arg for arg in args if not arg.startswith("-")), "train")
    if launched_rank() is not None and command != "train" and not {"--help", "-h"} & set(args):
        raise fail("torchrun", f"only `train` runs in several processes; run `blockspec {command}` in one, without "
                   "torchrun", int(os.environ["WORLD_SIZE"]))


T = TypeVar("T")
SpecPath = Annotated[Path, typer.Argument(help="Architecture spec (YAML).", show_default=False)]
SpecPaths = Annotated[
    list[Path], typer.Argument(help="Spec files (YAML), or folders of them.", show_default=False)
]
Edits = Annotated[
    Optional[list[str]],  # noqa: UP045 (Typer needs Optional here)
    typer.Option(
        "--set",
        metavar="PATH=VALUE",
        help="Change one field of the spec before it is checked (repeatable); VALUE is YAML, "
        "e.g. --set train.label_smoothing=0.2 --set 'blocks.C2[0].strided.out=72'.",
        show_default=False,
    ),
]


class Format(str, Enum):
    table = "table"
    markdown = "markdown"
    json = "json"


SummaryFormat = Annotated[Format, typer.Option("--format", "-f", help="Output format.")]
InputSize = Annotated[
    Optional[tuple[int, int]],  # noqa: UP045 (Typer needs Optional here)
    typer.Option("--input-size", metavar="H W", help="Analyse at another input size."),
]


@app.command("build-summary")
def build_summary(
    spec_path: SpecPath,
    format: SummaryFormat = Format.table,
    input_size: InputSize = None,
    verify: Annotated[
        bool, typer.Option("--verify", help="Also build the module and check each layer's parameters, shape, MACs and receptive field (exit 1 where they differ).")
    ] = False,
    edits: Edits = None,
) -> None:
    """Layer table with shapes, receptive field, jump, parameters, MACs and rule checks."""
    from blockspec.analysis import padding_only_taps
    from blockspec.load import load_spec
    from blockspec.render import as_json, markdown, print_table, widen
    from blockspec.summary import summarize

    spec = load_spec(spec_path, input_size=input_size, edits=edits)
    summary = summarize(spec)
    for note in padding_only_taps(summary.analysis):
        typer.echo(f"note: {note}", err=True)
    verification = _verification(spec, summary, spec_path) if verify else None
    if format is Format.json:
        document = summary.to_dict()
        if verification is not None:  # a script reads the result here, not from stderr
            document["verify"] = verification.to_dict()
        typer.echo(as_json(document))
    elif format is Format.markdown:
        typer.echo(markdown(summary), nl=False)
    else:
        console = Console(highlight=False)
        if not console.is_terminal:
            widen(console, 120)
        print_table(summary, console)
    if verification is not None:
        typer.echo(str(verification), err=format is Format.json or bool(verification.problems))
        if verification.problems:
            raise typer.Exit(1)


def _verification(spec: Spec, summary: Summary, spec_path: Path) -> Verification:
    """`--verify`: the built module against the analysis, layer by layer."""
    from blockspec.verify import verify_against_module

    try:
        return verify_against_module(spec, summary.analysis)
    except SpecError as error:
        raise _from_spec_file(error, spec_path) from None


@app.command()
def check(spec_paths: SpecPaths, edits: Edits = None) -> None:
    """Exit 1 if any rule in a spec fails (for CI); 0 when all hold.

    A spec that does not load, including a `data.augment` entry albumentations refuses, exits 2
    (with several specs, once every other one is checked)."""
    from blockspec.load import spec_files
    from blockspec.render import rule_line

    paths = spec_files(spec_paths)
    several = len(paths) > 1
    checked = violated = ruleless = 0
    for path, rules in _each_loaded(paths, lambda path: _rules_of(path, edits, f"{path}: " if several else "")):
        checked += 1
        ruleless += not rules
        failed = [rule for rule in rules if not rule.ok]
        if several:  # a line a spec, its violated rules below it
            typer.echo(_verdict(path, rules))
            for rule in failed:
                typer.echo(f"  {rule_line(rule)}")
        else:  # every rule, then the verdict, where the rules and a passing verdict go
            for rule in rules:
                typer.echo(rule_line(rule))
            typer.echo(_verdict(path, rules))
        violated += bool(failed)
    unloaded = len(paths) - checked
    if several:
        none = f"{ruleless} with no rules, " if ruleless else ""  # nothing held: not counted as holding
        typer.echo(f"{len(paths)} specs: {checked - violated - ruleless} with every rule holding, {none}"
                   f"{violated} with rules violated, {unloaded} not loaded")
    if unloaded or violated:
        raise typer.Exit(2 if unloaded else 1)


@app.command()
def compare(
    spec_paths: SpecPaths,
    format: SummaryFormat = Format.table,
    input_size: InputSize = None,
    edits: Edits = None,
) -> None:
    """One line per spec: parameters, MACs, receptive field, output and rules, side by side.

    A spec that does not load exits 2 (with several specs, once the others are compared)."""
    from blockspec.load import load_spec, spec_files
    from blockspec.render import as_json, comparison_markdown, print_comparison
    from blockspec.summary import summarize

    paths = spec_files(spec_paths)
    compared = [(str(path), summary) for path, summary in
                _each_loaded(paths, lambda path: summarize(load_spec(path, input_size=input_size, edits=edits)))]
    if not compared:
        raise typer.Exit(2)
    if format is Format.json:
        typer.echo(as_json([{"file": path, **summary.to_dict(layers=False)} for path, summary in compared]))
    elif format is Format.markdown:
        typer.echo(comparison_markdown(compared), nl=False)
    else:
        print_comparison(compared, Console(highlight=False))
    if len(compared) < len(paths):
        raise typer.Exit(2)


def _each_loaded(paths: list[Path], load: Callable[[Path], T]) -> Iterator[tuple[Path, T]]:
    """(path, load(path)) for each spec; one that does not load is said on stderr and left out
    while the others go on (a spec given alone: its error is the command's)."""
    for path in paths:
        try:
            yield path, load(path)
        except SpecError as error:
            if len(paths) == 1:
                raise
            typer.echo(f"error: {error}", err=True)


def _rules_of(spec_path: Path, edits: list[str] | None, note_prefix: str) -> tuple[RuleResult, ...]:
    """Load and check one spec as training would read it (its notes to stderr); its rule results."""
    from blockspec.analysis import padding_only_taps
    from blockspec.data.batched_plan import unbatched_note
    from blockspec.load import edited_source, load_spec
    from blockspec.recipe import check_warmup, recipe_notes
    from blockspec.summary import summarize
    from blockspec.train.data_path import training_pipeline

    spec = load_spec(spec_path, edits=edits, augment=True)
    try:
        check_warmup(spec)
    except SpecError as error:
        raise error.with_source(edited_source(str(spec_path), edits)) from None
    pipeline = training_pipeline(spec)
    for note in [*recipe_notes(spec), *filter(None, [unbatched_note(pipeline.augment)])]:
        typer.echo(f"note: {note_prefix}{note}", err=True)  # what training would say
    off = spec.data.augment_off
    final = [training_pipeline(spec, left_out=off.transforms)] if off is not None and off.transforms else []
    try:  # training's dry runs, on an image of the spec's input (the data must match it), of each list it trains with
        for each in (pipeline, *final):
            each.compose((0.5,) * spec.input.channels, (*spec.input.hw, spec.input.channels))
    except SpecError as error:
        raise _from_spec_file(error, edited_source(str(spec_path), edits)) from None
    summary = summarize(spec)
    for note in padding_only_taps(summary.analysis):  # a min_rf that such taps pass is not the field it looks
        typer.echo(f"note: {note_prefix}{note}", err=True)
    return summary.rules


def _verdict(spec_path: Path, rules: tuple[RuleResult, ...]) -> str:
    failed = [rule.name for rule in rules if not rule.ok]
    if not rules:
        return f"{spec_path}: no rules to check (add a `rules:` section)"
    if failed:
        return f"{spec_path}: {len(failed)} rule(s) violated: {', '.join(failed)}"
    return f"{spec_path}: all {len(rules)} rules hold"


OptionalPath = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Argument(help="Architecture spec (YAML); with --resume optional, and then the run's own.", show_default=False),
]
CheckpointSpecPath = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Argument(
        help="Architecture spec (YAML) to use instead of the one inside the checkpoint "
        "(it must build the same weights; e.g. other test-time views to score with).",
        show_default=False,
    ),
]
ExportSpecPath = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Argument(
        help="Architecture spec (YAML) to use instead of the one inside the checkpoint (it must build the same weights).",
        show_default=False,
    ),
]
Checkpoint = Annotated[Path, typer.Option(help="best.pt, last.pt or a run directory (its last.pt).")]


@app.command()
def train(
    spec_path: OptionalPath = None,
    epochs: Annotated[Optional[int], typer.Option(help="Override train.epochs.")] = None,  # noqa: UP045
    batch_size: Annotated[Optional[int], typer.Option(help="Override train.batch_size; rescales the learning rate unless --lr is given.")] = None,  # noqa: UP045
    lr: Annotated[Optional[float], typer.Option(help="Override the (peak) learning rate.")] = None,  # noqa: UP045
    dataset: Annotated[Optional[str], typer.Option(help="Override data.dataset.")] = None,  # noqa: UP045
    data_root: Annotated[Optional[str], typer.Option(help="Override data.root (with --resume: where the run's data now is).")] = None,  # noqa: UP045
    device: Annotated[str, typer.Option(help="auto, cuda, cuda:N, mps or cpu.")] = "auto",
    out: Annotated[Optional[Path], typer.Option(help="Run directory (default runs/<name>/<time>).")] = None,  # noqa: UP045
    seed: Annotated[Optional[int], typer.Option(help="Override train.seed.")] = None,  # noqa: UP045
    workers: Annotated[Optional[int], typer.Option(help="DataLoader worker processes of the per-image path, and as many for evaluation, kept through the run (default 2; a resumed run keeps its own).", show_default=False)] = None,  # noqa: UP045
    loader: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="auto (the default), gpu (batched tensor augmentation) or albumentations; a resumed run keeps its own.", show_default=False),
    ] = None,
    limit_train: Annotated[Optional[int], typer.Option(help="Use N training images.")] = None,  # noqa: UP045
    limit_test: Annotated[Optional[int], typer.Option(help="Use N test images.")] = None,  # noqa: UP045
    resume: Annotated[Optional[Path], typer.Option(help="Run directory or checkpoint to continue.")] = None,  # noqa: UP045
    init_from: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="Start from a checkpoint's (or a saved state dict's) weights, wherever names and shapes match; "
                     "the rest, e.g. a head for other classes, as built.", show_default=False),
    ] = None,
    target: Annotated[Optional[float], typer.Option(help="Target test accuracy in %.")] = None,  # noqa: UP045
    stop_at_target: Annotated[
        bool, typer.Option("--stop-at-target", help="End after the first epoch at the target (time-to-accuracy runs).")
    ] = False,
    edits: Edits = None,
) -> None:
    """Train a spec (CIFAR-10 by default) with checkpoints, metrics and plots."""
    from blockspec.load import edited_source, load_spec
    from blockspec.recipe import check_warmup
    from blockspec.train import distributed
    from blockspec.train.overrides import apply_overrides, blame_flags
    from blockspec.train.resume import check_command_repeats_run
    from blockspec.train.run import RunOptions, TrainingInterrupted
    from blockspec.train.run import train as run_training

    if spec_path is None and resume is None:
        raise fail("SPEC", "give a spec file to train, or --resume RUN_DIR to continue a run")
    recipe = {
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "dataset": dataset,
        "data_root": data_root,
        "seed": seed,
        "target": target,
    }
    spec = None
    if resume is not None:
        check_command_repeats_run(resume, spec_path, edits, recipe)
    else:
        spec = apply_overrides(load_spec(spec_path, edits=edits, augment=True), **recipe)
        try:
            check_warmup(spec, epochs_flag=epochs is not None)
        except SpecError as error:
            raise error if epochs is not None else error.with_source(edited_source(str(spec_path), edits)) from None
    if workers is not None and workers < 0:
        raise fail("--workers", "must be 0 or more", workers)
    if loader is not None:
        _check_choice("--loader", loader, LOADERS)
    kept = {"workers": workers, "loader": loader, "limit_train": limit_train, "limit_test": limit_test,
            "stop_at_target": stop_at_target or None,
            "init_from": _weights_file(init_from)}
    options = RunOptions(
        device=device,
        out=out,
        resume=resume,
        moved_data_root=data_root if resume is not None else None,
        given=frozenset(name for name, value in kept.items() if value is not None),
        **{name: value for name, value in kept.items() if value is not None},
    )
    try:
        run_training(spec, options, log=typer.echo)
    except SpecError as error:
        source = edited_source(str(spec_path), edits) if spec_path is not None else None
        raise _from_spec_file(blame_flags(error, recipe, trained=resume is not None), source) from None
    except TrainingInterrupted as stop:
        ranks = distributed.from_environment()
        if ranks.main or not stop.together:  # one message, not one per process
            typer.echo(str(stop), err=True)
        # the others wait for it: torchrun ends every process as soon as one has exited (a stop
        # before training is this process's alone: the others may be past the meeting point)
        if stop.together:
            distributed.stop(ranks)
        raise typer.Exit(stop.exit_code) from None


@app.command("eval")
def eval_command(
    spec_path: CheckpointSpecPath = None,
    checkpoint: Checkpoint = ...,  # type: ignore[assignment]
    dataset: Annotated[Optional[str], typer.Option(help="Override data.dataset.")] = None,  # noqa: UP045
    data_root: Annotated[Optional[str], typer.Option(help="Override data.root.")] = None,  # noqa: UP045
    limit_test: Annotated[Optional[int], typer.Option(help="Use N test images.")] = None,  # noqa: UP045
    device: Annotated[str, typer.Option(help="auto, cuda, cuda:N, mps or cpu.")] = "auto",
    format: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
    edits: Edits = None,
) -> None:
    """Overall and per-class test accuracy of a checkpoint (its spec is inside it)."""
    from dataclasses import asdict

    from blockspec.load import edited_source, load_spec
    from blockspec.render import as_json
    from blockspec.train.checkpoint import load_checkpoint, spec_inside
    from blockspec.train.evaluate import evaluate_checkpoint
    from blockspec.train.overrides import apply_overrides, blame_flags

    _check_choice("--format", format, REPORT_FORMATS)

    source = spec_path or f"{checkpoint} (spec inside)"
    if spec_path is not None:  # the file's problems first, as every command taking a SPEC names them
        spec = load_spec(spec_path, edits=edits)
        payload = load_checkpoint(checkpoint)
    else:
        payload = load_checkpoint(checkpoint)
        spec = spec_inside(payload, checkpoint, edits)
    spec = apply_overrides(spec, dataset=dataset, data_root=data_root)
    spec_from = _spec_from(spec_path, edits)  # where the spec came from, when not the checkpoint alone
    try:
        report = evaluate_checkpoint(payload, checkpoint, spec, device, limit_test, spec_from=spec_from)
    except SpecError as error:  # the data found not to fit: named by the flag that chose it, or the spec's field
        blamed = blame_flags(error, {"dataset": dataset, "data_root": data_root}, trained=spec_from is None)
        raise _from_spec_file(blamed, edited_source(str(source), edits)) from None
    if format == "json":
        typer.echo(as_json({**asdict(report), "views": report.views or None}))
        return
    weights = f"epoch {report.epoch}" if report.epoch else "epoch 0, before any training"
    typer.echo(f"{report.spec_name} ({weights}): test accuracy {report.accuracy:.2f}% on {report.images:,} images "
               f"(loss {report.loss:.4f})" + (f", each averaged with {report.views}" if report.views else ""))
    width = max(len(name) for name in report.per_class)
    for name, accuracy in report.per_class.items():
        typer.echo(f"  {name:<{width}}  {accuracy:6.2f}%")


@app.command()
def predict(
    images: Annotated[list[Path], typer.Argument(help="Image files, or folders of them.", show_default=False)],
    checkpoint: Checkpoint = ...,  # type: ignore[assignment]
    top: Annotated[int, typer.Option(min=1, max=INT_LIMIT, help="How many classes to name per image.")] = 1,
    format: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
    device: Annotated[str, typer.Option(help="auto, cuda, cuda:N, mps or cpu.")] = "auto",
) -> None:
    """The most probable classes of each image file, scored as `eval` scores test images.

    Same normalisation and test-time views as the run's evaluation; the images must have the
    network's input size. A file that cannot be read is named after the others' scores, and the
    exit status is then 2."""
    from blockspec.predict import image_files, predict_files, prediction_line
    from blockspec.render import as_json
    from blockspec.trained import load_trained

    _check_choice("--format", format, REPORT_FORMATS)
    files = image_files(images)
    trained = load_trained(checkpoint, device=device, flag="--checkpoint")
    predictions, unread = predict_files(trained, files, top)
    if format == "json":
        typer.echo(as_json([prediction.to_dict() for prediction in predictions]))
    else:
        width = max((len(prediction.file) for prediction in predictions), default=0)
        for prediction in predictions:
            typer.echo(prediction_line(prediction, width))
    for error in unread:  # after the scores of the others, as grep reports a file it cannot read
        typer.echo(f"error: {error}", err=True)
    if unread:
        sys.exit(2)


@app.command("preview-augment")
def preview_augment(
    spec_path: SpecPath,
    out: Annotated[Path, typer.Option(help="PNG file to write.")] = Path("augment-preview.png"),
    dataset: Annotated[Optional[str], typer.Option(help="Override data.dataset.")] = None,  # noqa: UP045
    data_root: Annotated[Optional[str], typer.Option(help="Override data.root.")] = None,  # noqa: UP045
    images: Annotated[int, typer.Option(min=1, max=64, help="How many training images (rows).")] = 8,
    seed: Annotated[int, typer.Option(min=0, max=INT_LIMIT, help="Seed for the augmentations shown.")] = 0,
    loader: Annotated[
        str,
        typer.Option(help="Draw as training would: auto (batched where it can be), gpu (batched) or albumentations."),
    ] = "auto",
    edits: Edits = None,
) -> None:
    """Save a grid of training images, each followed by augmented versions of it."""
    from blockspec.data import load_dataset, read_augment
    from blockspec.data.augment import mean_fill
    from blockspec.data.batched_plan import plan_for_loader
    from blockspec.data.preview import albumentations_versions, augment_grid_png, batched_versions
    from blockspec.load import edited_source, load_spec
    from blockspec.train.data_path import training_pipeline
    from blockspec.train.overrides import apply_overrides

    _check_choice("--loader", loader, LOADERS)
    spec = apply_overrides(load_spec(spec_path, edits=edits, augment=True), dataset=dataset, data_root=data_root)
    check_output_file(out, "--out")
    for note in read_augment(spec.data.augment, channels=spec.input.channels).notes:
        typer.echo(f"note: {note}")
    pipeline = training_pipeline(spec)  # as training applies it
    if pipeline.alternate:
        typer.echo("note: data.augment[0].HorizontalFlip is not drawn: with data.alternate_flip the data set "
                   "mirrors each image every other epoch")
    plan = plan_for_loader(pipeline.augment, loader)
    try:
        data = load_dataset(spec.data.dataset, spec.data.root)
        compose = pipeline.compose(data.mean, data.train_images.shape[1:])
    except SpecError as error:
        raise _from_spec_file(error, edited_source(str(spec_path), edits)) from None
    versions = batched_versions(plan, mean_fill(data.mean), seed) if plan else albumentations_versions(compose, seed)
    write_output(out, augment_grid_png(data.train_images, versions, n=images, seed=seed))
    typer.echo(f"wrote {out} ({'batched tensor' if plan else 'per-image albumentations'} augmentation)")


@app.command()
def export(
    spec_path: ExportSpecPath = None,
    checkpoint: Checkpoint = ...,  # type: ignore[assignment]
    format: Annotated[
        str, typer.Option("--format", help="torchscript, onnx, or pt2 (torch.export's program, TorchScript's successor).")
    ] = "torchscript",
    out: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="File to write.  [default: model.pt, model.onnx or model.pt2, by --format]", show_default=False),
    ] = None,
) -> None:
    """Export a checkpoint to TorchScript, ONNX or torch.export's .pt2 and check it numerically against torch."""
    from blockspec.export import SUFFIXES, export_metadata, export_model, export_notes, input_description
    from blockspec.load import load_spec
    from blockspec.train.checkpoint import load_checkpoint, model_from_checkpoint, spec_inside

    out = out or Path(f"model{SUFFIXES.get(format, '.pt')}")
    other = next((name for name, suffix in SUFFIXES.items() if name != format and out.suffix.lower() == suffix), None)
    if format in SUFFIXES and other is not None:
        raise fail("--out", f"{out.suffix} names {other} files, and --format is {format} (write {out.with_suffix(SUFFIXES[format]).name})",
                   str(out))
    check_output_file(out, "--out")
    payload = load_checkpoint(checkpoint)
    if spec_path is None:
        spec = trained = spec_inside(payload, checkpoint)
    else:
        spec = load_spec(spec_path)
        try:  # the run's own spec says what it trained; a SPEC is how a checkpoint whose spec no longer loads is exported
            trained = spec_inside(payload, checkpoint)
        except SpecError:
            trained = spec
    metadata = export_metadata(spec, payload, trained)
    model = model_from_checkpoint(spec, payload, checkpoint, spec_from=_spec_from(spec_path, None))
    exported, difference = export_model(model, spec, format, metadata)
    write_output(out, exported)
    typer.echo(f"wrote {out} ({format}); max |exported − torch| = {difference:.2e} on 4 random inputs")
    typer.echo(input_description(metadata, format))
    for note in export_notes(spec, trained):
        typer.echo(f"note: {note}")


def _spec_from(spec_path: Path | None, edits: list[str] | None) -> tuple[str, str] | None:
    """Where a checkpoint command's spec came from when it is not the checkpoint's own: what
    to blame when it builds other weights."""
    if spec_path is not None:
        return "SPEC", f"{spec_path} with --set {' '.join(edits)}" if edits else str(spec_path)
    return ("--set", " ".join(edits)) if edits else None


def _weights_file(init_from: Path | None) -> str | None:
    """`--init-from` as the run records it: the file itself (a run directory's last.pt), as an
    absolute path, so that a resume from elsewhere or naming it another way names it alike."""
    if init_from is None:
        return None
    return str((init_from / "last.pt" if init_from.is_dir() else init_from).resolve())


def _from_spec_file(error: SpecError, spec_path: Path | str | None) -> SpecError:
    """A problem with the spec's own fields found past loading (data that does not fit its
    input, a layer too large to build) names the file, as the loader's problems do; a
    problem with a flag does not."""
    if spec_path is None or any(problem.path.startswith("--") or problem.path == "SPEC" for problem in error.problems):
        return error
    return error.with_source(str(spec_path))


def _check_choice(flag: str, value: str, allowed: tuple[str, ...]) -> None:
    """A flag whose value is one of a few words."""
    if value not in allowed:
        raise fail(flag, f"allowed: {', '.join(allowed)}", value)


SCHEMA_FORMATS = ("json", "markdown")
REPORT_FORMATS = ("table", "json")  # eval's and predict's
LOADERS = ("auto", "gpu", "albumentations")


@app.command()
def schema(
    format: Annotated[
        str, typer.Option("--format", help="json (for editors) or markdown (docs/reference.md).")
    ] = "json",
) -> None:
    """Print the JSON Schema (draft 2020-12) of spec files, or the reference rendered from it."""
    import json

    from blockspec.schema import spec_json_schema

    _check_choice("--format", format, SCHEMA_FORMATS)
    if format == "markdown":
        from blockspec.schema_doc import schema_markdown

        typer.echo(schema_markdown(spec_json_schema()), nl=False)
    else:
        typer.echo(json.dumps(spec_json_schema(), indent=2))


def _tolerate_narrow_encodings() -> list[io.TextIOWrapper]:
    """Output whose encoding lacks ✓, × or → (a file redirected on Windows is cp1252; latin-1
    locales) gets `?` in their place instead of a crash: text the terminal cannot show is
    still better than no result. Returns the streams changed, for main to restore."""
    loosened = [stream for stream in (sys.stdout, sys.stderr)
                if isinstance(stream, io.TextIOWrapper) and stream.errors == "strict"]
    for stream in loosened:
        stream.reconfigure(errors="replace")
    return loosened


def _speaks_for_the_run() -> bool:
    """One process, or rank 0 of several (torchrun): every rank meets the same problem with the
    spec, its flags or its data, and the user should read it once."""
    return launched_rank() in (None, 0)


def _rank_named() -> str:
    """Which of torchrun's processes speaks, where it is not rank 0."""
    rank = launched_rank()
    return f"(rank {rank}) " if rank else ""


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors exit 2 with a message, never a traceback."""
    loosened = _tolerate_narrow_encodings()
    try:
        _one_command_a_process(sys.argv[1:] if argv is None else argv)
        app(args=argv)
    except SpecError as error:
        if _speaks_for_the_run() or error.alone:
            typer.echo(f"error: {_rank_named()}{error}", err=True)
        sys.exit(2)
    except Exception as error:  # noqa: BLE001 (a bug must still not dump a traceback)
        if isinstance(error, OSError) and error.errno == errno.ENAMETOOLONG:  # any path argument, wherever first used
            typer.echo(f"error: {error.filename or 'a path given'}: a name in it is too long for the file system "
                       f"({error.strerror})", err=True)
            sys.exit(2)
        if os.environ.get("BLOCKSPEC_DEBUG"):
            raise
        from blockspec.layers import plugin_runtime_fault

        said = next(iter(str(error).splitlines()), "")  # its first line: torch's run to several
        if launched_rank() is not None:
            from blockspec.train.distributed import another_process_ended

            if another_process_ended(error):
                typer.echo(f"error: another process of this torchrun job ended first ({type(error).__name__}: {said}); "
                           "its own message, or torchrun's, says why", err=True)
                sys.exit(1)
        if (fault := plugin_runtime_fault(error)) is not None:  # a plugin's module failing in training, eval, export
            if _speaks_for_the_run():
                typer.echo(f"error: {fault}", err=True)
            sys.exit(2)
        if is_out_of_memory(error):  # the machine's limit, not a bug: a data set, batch or input too large for it
            typer.echo(f"error: out of memory{f' ({said})' if said else ''}: this machine, or its memory limit, cannot "
                       "hold what the command needs (a smaller batch or input needs less)", err=True)
            sys.exit(1)
        typer.echo(
            f"internal error: {type(error).__name__}: {error}\n"
            "This is a bug in blockspec; rerun with BLOCKSPEC_DEBUG=1 for the traceback.",
            err=True,
        )
        sys.exit(70)
    finally:  # a program calling main() gets its streams back as they were
        for stream in loosened:
            stream.reconfigure(errors="strict")
