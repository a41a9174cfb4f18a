"""Branch a run at its last saved epoch into a new run directory whose recipe differs only in
the final epochs (`data.augment_off`); `blockspec train --resume NEW` then trains the rest.

Resuming is exact and the switch acts by epoch number, so the branch trains what a run
started from scratch with the same edits would: the epochs before the switch are the same
arithmetic either way. Comparing end-of-run recipes on one seed then costs their final epochs
instead of whole runs (5 epochs instead of 40). Edits to anything else, or a switch at or
before the saved epoch, would make the branch a different run, so they are refused.

    python benchmarks/branch_run.py RUN_DIR NEW_DIR --set data.augment_off.last_epochs=5 \
        --set 'data.augment_off.transforms=[CoarseDropout]'
    blockspec train --resume NEW_DIR
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from blockspec.errors import SpecError, fail
from blockspec.load import parse_spec
from blockspec.train.checkpoint import load_checkpoint, save_atomic
from blockspec.train.data_path import first_switched_epoch
from blockspec.train.records import write_text_atomic

BRANCHABLE = "data.augment_off"


def branch(run_dir: Path, new_dir: Path, edits: list[str]) -> int:
    """Write `new_dir`: `run_dir`'s files with the edits in last.pt's spec; returns the saved epoch."""
    for edit in edits:
        path = edit.partition("=")[0].strip()
        if path != BRANCHABLE and not path.startswith(BRANCHABLE + "."):
            raise fail("--set", f"a branch may only change {BRANCHABLE} (the final epochs' recipe)", edit)
    checkpoint = load_checkpoint(run_dir)
    spec = parse_spec(checkpoint["spec"], f"{run_dir} (spec inside)", edits=edits)
    saved = checkpoint["epoch"]
    switch = first_switched_epoch(spec)
    if switch is None or switch <= saved:
        when = "never" if switch is None else f"from epoch {switch}"
        raise fail(BRANCHABLE, f"switches {when}; the branch starts after epoch {saved}, so it must switch later")
    if new_dir.exists():
        raise fail("NEW_DIR", "already exists; a branch starts a new run directory", str(new_dir))
    shutil.copytree(run_dir, new_dir)
    payload = {key: value for key, value in checkpoint.items() if key != "format"}  # save_atomic adds it
    save_atomic(payload | {"spec": spec.to_yaml()}, new_dir / "last.pt")
    write_text_atomic(new_dir / "spec.yaml", spec.to_yaml())
    return saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="a run directory (its last.pt is the branch point)")
    parser.add_argument("new_dir", type=Path, help="the branch's run directory (must not exist)")
    parser.add_argument("--set", dest="edits", action="append", default=[], metavar="PATH=VALUE", required=True)
    args = parser.parse_args()
    try:
        saved = branch(args.run_dir, args.new_dir, args.edits)
    except SpecError as error:
        sys.exit(f"branch_run: {error}")
    print(f"{args.new_dir}: branched after epoch {saved}; continue with: blockspec train --resume {args.new_dir}")


if __name__ == "__main__":
    main()
