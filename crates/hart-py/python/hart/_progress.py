"""The progress callback the engine's calls report to: a tqdm bar (in
terminals and notebooks alike, via tqdm.auto), nothing (``progress=False``),
or the caller's own ``progress(done, total, message)``."""

from __future__ import annotations


class Bar:
    """``bar(done, total, message)``, called by the engine's poller; a context manager."""

    def __init__(self, desc, enabled):
        self.desc = desc
        self.enabled = enabled
        self.bar = None

    def __call__(self, done, total, message):
        if callable(self.enabled):
            self.enabled(done, total, message)
            return
        if not self.enabled or not total:
            return
        if self.bar is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=self.desc, unit="", dynamic_ncols=True, leave=False)
        if self.bar.total != total:
            self.bar.total = total
        self.bar.update(done - self.bar.n)
        if message:
            self.bar.set_postfix_str(message, refresh=False)

    def __enter__(self):
        return self if self.enabled else None

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()
        return False
