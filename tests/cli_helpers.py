"""Running the CLI in-process the way a shell would, capturing exit code and output."""

from __future__ import annotations

import pytest

from blockspec.cli import main


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `blockspec ARGV`."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err
