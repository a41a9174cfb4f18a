"""Progress bars on stderr, shown on a terminal only (tqdm's `disable=None`)."""

from __future__ import annotations

from tqdm import tqdm

# tqdm's default, with four postfix fields, ran past 80 columns and lost its end (the rate);
# the rate is the postfix's images/s; the time taken and the learning rate are in each epoch's line
BAR_FORMAT = "{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} eta {remaining}{postfix}"


class Bar(tqdm):
    """tqdm without its monitor thread, which any bar starts (even a disabled one, as on a
    non-terminal) and nothing stops: a daemon thread waking every 10 s through interpreter
    shutdown, a candidate for the rare abort of a DDP worker at exit. It only tunes
    `miniters`, which these bars do not set."""

    monitor_interval = 0
