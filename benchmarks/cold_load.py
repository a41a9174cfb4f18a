"""Seconds to load an image-folder data set (a folder or an archive) from a cold cache, then warm.

A fresh, empty cache folder is used (XDG_CACHE_HOME), so the first load decodes everything;
the second reads the cached arrays. Compare two versions of the code by running this on each
(for instance with `git stash`), one after the other on the same machine.

    python benchmarks/cold_load.py ../shared/data/cifar10-jpeg.tar.xz
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="image folder or archive (.tar, .tar.gz, .tar.xz, .zip)")
    args = parser.parse_args()
    cache = tempfile.mkdtemp(prefix="blockspec-cold-")
    os.environ["XDG_CACHE_HOME"] = cache  # read by blockspec's caches at each load
    try:
        from blockspec.data import load_dataset

        start = time.perf_counter()
        data = load_dataset("imagefolder", args.root)
        cold = time.perf_counter() - start
        start = time.perf_counter()
        load_dataset("imagefolder", args.root)
        warm = time.perf_counter() - start
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    print(f"{args.root}: cold {cold:.1f} s, cached {warm:.1f} s "
          f"({len(data.train_labels):,} train + {len(data.test_labels):,} test images)")


if __name__ == "__main__":
    main()
