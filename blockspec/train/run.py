"""A training run from start (or `--resume`) to finish, with its directory of artefacts.

Order of writes at each epoch end: best.pt, then last.pt (which carries the metric
history), then metrics/summary/curves rewritten from that history. A SIGKILL at any
moment therefore leaves a consistent last.pt, and resuming never loses or doubles an epoch.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from typing import Any

from blockspec.analysis import input_shape, trace
from blockspec.build import build_model
from blockspec.data import load_dataset
from blockspec.data.loader import is_worker_death, release_workers
from blockspec.errors import SpecError, fail
from blockspec.recipe import recipe_notes
from blockspec.spec import Spec
from blockspec.train import distributed
from blockspec.train.checkpoint import TrainedOn, load_checkpoint, load_weights
from blockspec.train.data_path import RunLoaders, check_data_fits, make_run_loaders
from blockspec.train.data_root import found_root, root_record
from blockspec.train.device import DeviceInfo, compile_refusal, pick_device
from blockspec.train.host_memory import reuse_freed_host_memory
from blockspec.train.init_weights import StartWeights, check_fits
from blockspec.train.interrupt import StopRequested, ctrl_c_between_steps, raise_if_pending, stop_at_once
from blockspec.train.loop import Batches, evaluate
from blockspec.train.memory import memory_peaks
from blockspec.train.step import GraphedStep, Step
from blockspec.train.optim import momentum_summary, peak_lr, peak_muon_lr
from blockspec.train.options import RunOptions, kept_on_resume, resumed_options
from blockspec.train.plots import CurvesPicture, plot_confusion, plot_misclassified
from blockspec.train.records import (
    is_new_best,
    summarize_history,
    write_metrics,
    write_summary,
    write_text_atomic,
)
from blockspec.train.resume import check_resumable, resumed_spec
from blockspec.train.rundir import (
    check_room_for_run,
    check_run_dir_free,
    checkpoint_dir,
    disk_errors_reported,
    hold_run_dir,
    prepare_run_dir,
    windows_folder_problem,
    worker_death_error,
)
from blockspec.train.session import Session
from blockspec.train.tta import TTAViews
from blockspec.train.whiten import whitening_filters


class TrainingInterrupted(Exception):
    """Ctrl-C or SIGTERM: last.pt holds the last complete epoch; the CLI exits with
    `exit_code` (128 + the signal's number: 130, 143), as a shell reports such an ending."""

    def __init__(self, message: str, exit_code: int = 130, together: bool = True) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.together = together  # under torchrun: whether every process stopped, and meets the others on its way out


def train(spec: Spec | None, options: RunOptions, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train `spec`, or resume `options.resume` (then `spec`, if given, must be the run's own),
    and return the run summary."""
    with stop_at_once(), ExitStack() as held:  # the run directory, held until the run ends
        try:
            return _train(spec, options, log, held)
        except KeyboardInterrupt as stop:  # before the run's first save: loading, building
            raise _before_training(stop, options) from None


def _train(spec: Spec | None, options: RunOptions, log: Callable[[str], None], held: ExitStack) -> dict[str, Any]:
    checkpoint = load_checkpoint(options.resume, "--resume") if options.resume else None
    if checkpoint is not None:
        check_resumable(checkpoint, options)
        spec = resumed_spec(checkpoint, spec, options)
        options = resumed_options(options, checkpoint.get("run_options"))
    assert spec is not None
    if checkpoint is None and options.out is None and sys.platform == "win32" and (why := windows_folder_problem(spec.name)):
        # before any slow work: the run would go to runs/<name>/, which this system cannot make
        raise fail("name", f"{why}; rename the network or give --out", spec.name)
    start = None
    if options.init_from is not None and checkpoint is None:  # a resumed run's weights are its own by now
        # read before any slow work and before the run directory exists: a bad file leaves nothing behind
        start = StartWeights(load_weights(Path(options.init_from), "--init-from"), options.init_from)
        check_fits(build_model(spec), start)
    ranks = distributed.from_environment()
    if not ranks.main:
        log = _silent
    if checkpoint is None and options.out is not None:
        check_run_dir_free(options.out)
    info = pick_device(distributed.device_for(options.device, ranks), spec.train.amp, spec.train.channels_last)
    if info.device.type == "cpu":
        reuse_freed_host_memory()  # large batches stop re-faulting their buffers at every step
    distributed.start(ranks, info.device)
    for note in recipe_notes(spec):
        log(f"note: {note}")
    data_root = found_root(spec, checkpoint) if checkpoint is not None else spec.data.root
    data = load_dataset(spec.data.dataset, data_root)
    check_data_fits(spec, data, trained=checkpoint is not None)  # a resumed run's input is its weights'
    train_images = len(data.train_labels)  # before any limit: a resume checks it
    data = data.limited(options.limit_train, options.limit_test)
    _check_batch_for_batch_norm(spec)
    loaders = make_run_loaders(spec, data, options, info, ranks)
    train_loader, test_loader = loaders.train, loaders.test
    if loaders.unbatched and options.loader == "auto":
        log(f"note: {loaders.unbatched}")
    images = len(train_loader.dataset) // ranks.world
    if spec.train.batch_size > images:
        log(f"note: batch {spec.train.batch_size} is more than the {images:,} training images"
            f"{' a process' if ranks.active else ''}: each step takes all {images:,}, while the learning rate and "
            f"the EMA decay are set for batches of {spec.train.batch_size}")
    if len(train_loader) == 0:  # one image: a batch of one is dropped, BatchNorm cannot train on it
        where, value = ("--limit-train", options.limit_train) if options.limit_train else ("data.root", spec.data.root)
        raise fail(where, "training needs at least 2 images a process; this gives 1", value)
    if checkpoint is not None:
        run_dir = checkpoint_dir(options.resume)
        if ranks.main:
            held.enter_context(hold_run_dir(run_dir, "--resume"))
    elif ranks.main:
        run_dir = prepare_run_dir(options.out, spec.name, held)
    else:
        run_dir = options.out or Path("runs") / spec.name  # never written by this rank
    stem_filters = None
    if spec.train.whiten_stem and checkpoint is None:
        stem_filters = whitening_filters(spec, data.train_images, data.mean, data.std)
    session = Session(spec, info, len(train_loader), ranks, TrainedOn.of(data), stem_filters, start,
                      train_images=train_images, data_root=root_record(spec, data_root))
    history: list[dict[str, Any]] = []
    if checkpoint is not None:
        session.restore(checkpoint)
        history = list(checkpoint["history"])
        log(f"resuming {run_dir} after epoch {checkpoint['epoch']}")
    log(_start_line(spec, info, ranks, session, loaders, run_dir))
    if session.start_report:
        log(session.start_report)
    batches = Batches(info, data.mean, data.std)
    setup = {"run_options": kept_on_resume(options), "processes": ranks.world, "augmentation": loaders.path,
             "classes": list(data.classes)}
    curves = CurvesPicture(run_dir / "curves.png")
    last_eval = None
    saved = len(history)  # the epoch last.pt holds
    stopped = options.stop_at_target and any(record["test_acc"] >= spec.train.target for record in history)
    start = spec.train.epochs + 1 if stopped else saved + 1
    restart = distributed.resume_command(ranks)  # the command a message says to resume with
    writing = partial(disk_errors_reported, run_dir, command=restart)
    try:
        if ranks.main and not (run_dir / "last.pt").exists():
            with writing("write the first checkpoint", None):
                session.save(run_dir / "last.pt", epoch=0, history=history, run_options=kept_on_resume(options))
            check_room_for_run(run_dir, restart)
        if ranks.main and not (run_dir / "spec.yaml").exists():  # after last.pt, so any run that has one can resume
            with writing("write spec.yaml", saved):
                write_text_atomic(run_dir / "spec.yaml", spec.to_yaml())
        agree = partial(distributed.any_rank, ranks=ranks, device=info.device) if ranks.active else None
        with ctrl_c_between_steps(agree) as check_stop:
            try:
                for epoch in range(start, spec.train.epochs + 1):
                    check_stop(boundary=True)  # a Ctrl-C during the evaluation
                    if loaders.switch is not None:
                        loaders.switch.apply(train_loader, epoch)
                    record, last_eval = session.run_epoch(epoch, train_loader, test_loader, batches, check_stop)
                    history.append(record)
                    reached = options.stop_at_target and record["test_acc"] >= spec.train.target
                    if ranks.active:  # rank 0's evaluation decides: each process's batch norm statistics, and so its accuracy, differ
                        reached = distributed.main_decides(reached, ranks, info.device)
                    if not ranks.main:
                        saved = epoch  # rank 0 saves it: what this rank says if it stops alone
                        if reached:
                            break
                        continue
                    with writing(f"save epoch {epoch}", epoch - 1):
                        if is_new_best(history):
                            session.save_best(run_dir / "best.pt", epoch)
                        session.save(run_dir / "last.pt", epoch, history, kept_on_resume(options))
                    saved = epoch
                    with writing(f"write the metrics and plots of epoch {epoch}", epoch):
                        write_metrics(run_dir, history)
                        write_summary(run_dir, run_summary(spec, history, info, setup, session.step))
                        curves.update(history)
                    log(epoch_line(record, spec.train.epochs))
                    if reached:
                        log(f"stopping: the target {spec.train.target:g}% is reached (--stop-at-target)")
                        break
                release_workers(train_loader, test_loader)  # they persist from epoch to epoch: not past the last
            except (RuntimeError, ConnectionError) as error:  # a worker's end: raised wherever the main process is then
                release_workers(train_loader, test_loader)  # before another's end is raised in turn
                check_stop.raise_if_requested()  # a DataLoader worker ended by the same SIGINT (sent to the process group)
                if is_worker_death(error):
                    raise worker_death_error(error, saved + 1, run_dir, saved, options.workers, restart) from None
                raise
            # a Ctrl-C during the last evaluation or save: the epoch is kept, the run stops
            check_stop(boundary=True)
        if last_eval is None:
            last_eval = evaluate(session.eval_model, test_loader, batches, session.loss_fn, TTAViews.of(spec.train))
            release_workers(test_loader)
        if not ranks.main:
            distributed.stop(ranks)
            return run_summary(spec, history, info, setup, session.step)
        summary = run_summary(spec, history, info, setup, session.step)
        with writing("write the final records and plots", len(history)):
            write_metrics(run_dir, history)  # again: a run resumed after its last save wrote them
            curves.finish(history)
            test_images = test_loader.dataset.images
            plot_misclassified(test_images, last_eval.labels, last_eval.predictions, data.classes, run_dir / "misclassified.png")
            plot_confusion(last_eval.labels, last_eval.predictions, data.classes, run_dir / "confusion.png")
            write_summary(run_dir, summary)
        raise_if_pending()  # a SIGTERM that landed in a finaliser of the plots
        reached = summary["target_epoch"]
        log(
            f"best test accuracy {summary['best_test_acc']:.2f}% at epoch {summary['best_epoch']}; "
            + (f"target {spec.train.target:g}% first reached at epoch {reached}" if reached else f"target {spec.train.target:g}% not reached")
            + f"; artefacts in {run_dir}"
        )
        distributed.stop(ranks)
        return summary
    except KeyboardInterrupt as stop:  # from the first save on: a second Ctrl-C inside a save, one in the final records
        if ranks.main:
            saved = _epoch_saved(run_dir, saved)
            if saved is None:
                raise _before_training(stop, options) from None
            with writing("draw the learning curves", saved):
                curves.finish(history[:saved])
        signum = _signal_of(stop)
        raise TrainingInterrupted(
            f"{_stopped_by(signum)}; {run_dir / 'last.pt'} holds "
            f"epoch {saved}. Resume with: {restart} train --resume {run_dir}",
            exit_code=128 + signum,
            together=not getattr(stop, "alone", False),
        ) from None


def _signal_of(stop: KeyboardInterrupt) -> int:
    return stop.signum if isinstance(stop, StopRequested) else signal.SIGINT


def _stopped_by(signum: int) -> str:
    """How the messages name the stop: SIGTERM's is not the user's Ctrl-C."""
    return "stopped by SIGTERM" if signum == signal.SIGTERM else "interrupted"


def _before_training(stop: KeyboardInterrupt, options: RunOptions) -> TrainingInterrupted:
    signum = _signal_of(stop)
    return TrainingInterrupted(
        f"{_stopped_by(signum)} before training "
        + ("resumed; the run is as it was" if options.resume else "began; nothing was trained"),
        exit_code=128 + signum,
        together=False,
    )


def _epoch_saved(run_dir: Path, counted: int) -> int | None:
    """The epoch last.pt holds (None: there is none yet), read from it: a second Ctrl-C can land
    after a save's rename and before the loop counted the epoch, and the message must name
    what the file holds. The whole file is read, a few MB for these networks; one that cannot
    be read (load_checkpoint says why, as a SpecError) leaves the count the loop kept."""
    if not (run_dir / "last.pt").exists():
        return None
    try:
        return int(load_checkpoint(run_dir / "last.pt")["epoch"])
    except SpecError:
        return counted


def _check_batch_for_batch_norm(spec: Spec) -> None:
    """Batch norm cannot train on one image where a channel holds a single value (a 1×1 map,
    a vector), so a batch of one is refused before the run starts rather than at that layer;
    on larger maps one image gives each channel its statistics, and trains."""
    if spec.train.batch_size > 1:
        return
    import torch
    from torch.nn.modules.batchnorm import _BatchNorm

    model = build_model(spec)
    single: list[str] = []
    hooks = [
        module.register_forward_pre_hook(lambda _, inputs, name=name: single.append(name)
                                         if inputs[0][0].numel() == inputs[0].shape[1] else None)
        for name, module in model.named_modules() if isinstance(module, _BatchNorm)
    ]
    with torch.no_grad():
        model.eval()(torch.zeros(1, *input_shape(spec)))
    for hook in hooks:
        hook.remove()
    if single:
        raise fail("train.batch_size", f"the batch norm at {single[0]} gets one value a channel from one image, "
                   "and cannot train on it: use batches of 2 or more images", 1)


def _start_line(
    spec: Spec, info: DeviceInfo, ranks: distributed.Ranks, session: Session, loaders: RunLoaders, run_dir: Path
) -> str:
    """The run in one line: the network, where and how it trains, on what data, and where its
    records go."""
    analysis = trace(spec)
    return (
        f"{spec.name}: {analysis.total_params:,} parameters, receptive field "
        f"{analysis.receptive_field}, on {info.describe()}"
        + (f" × {ranks.world} processes (DDP)" if ranks.active else "")
        + (", each step replayed as one CUDA graph" if session.graphed else "")
        + (", train.cuda_graphs ignored (NVIDIA CUDA and one process only)"
           if spec.train.cuda_graphs and not session.graphed else "")
        + (f", train.compile ignored ({why})" if spec.train.compile and (why := compile_refusal(info)) else "")
        + (f", first layer a patch whitening ({spec.train.whiten_stem})" if spec.train.whiten_stem else "")
        + f"; batch {spec.train.batch_size}"
        + (f" (batch norm in groups of {ghost})" if (ghost := spec.defaults.ghost_batch) else "")
        + f", lr {peak_lr(spec):g}"
        + (f" (Muon {muon_lr:g} on the kernels that feed a batch norm)" if (muon_lr := peak_muon_lr(spec)) else "")
        + (f", {momentum}" if (momentum := momentum_summary(spec)) else "")
        + (f", EMA {spec.train.ema:g}" if spec.train.ema else "")
        + (f", lookahead every {lookahead.every} steps" if (lookahead := spec.train.lookahead) else "")
        + f"; {len(loaders.train.dataset):,} train / "
        f"{len(loaders.test.dataset):,} test images ({spec.data.dataset}, {loaders.path} "
        f"augmentation{', alternating flip' if spec.data.alternate_flip else ''}"
        f"{'; ' + loaders.switch.description if loaders.switch else ''}); run dir {run_dir}"
    )


def _silent(message: str) -> None:
    """Ranks other than 0 say nothing; rank 0 speaks for the run."""


def run_summary(
    spec: Spec, history: list[dict[str, Any]], info: DeviceInfo, setup: dict[str, Any], step: Step | None = None
) -> dict[str, Any]:
    """The run at a glance, with `setup`: what spec.yaml does not hold (the run's options, its
    augmentation path), and whether `step` trained as a CUDA graph. Memory peaks are the highest
    any epoch recorded, so a run resumed in a new process still reports the peak of the
    processes before it."""
    summary = summarize_history(history, spec.train.target)
    summary["device"] = info.describe()
    summary.update(setup)
    summary["cuda_graph"] = step.state if isinstance(step, GraphedStep) else None
    for key, now in memory_peaks(info).items():
        recorded = [value for value in (*(r.get(key) for r in history), now) if value is not None]
        summary[key] = max(recorded, default=None)
    return summary


def epoch_line(record: dict[str, Any], epochs: int) -> str:
    return (
        f"epoch {record['epoch']:>3}/{epochs}  train loss {record['train_loss']:.4f} "
        f"acc {record['train_acc']:6.2f}%  test loss {record['test_loss']:.4f} "
        f"acc {record['test_acc']:6.2f}%  lr {record['lr']:.5f}  "
        f"{record['images_per_second']:,.0f} img/s  {record['seconds']:.1f} s"
    )


__all__ = ["RunOptions", "TrainingInterrupted", "train"]
