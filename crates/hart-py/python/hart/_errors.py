"""HART's exceptions. Every error the engine reports arrives as one of these,
with the one-line message the CLI prints after ``error:``."""


class HartError(Exception):
    """Base class of every error HART raises."""


class InvalidArgumentError(HartError, ValueError):
    """A bad argument or option value (the CLI's usage errors)."""


class NotFoundError(HartError, FileNotFoundError):
    """A model file, data set or fault list that does not exist."""


class DataError(HartError, ValueError):
    """A file that exists but whose contents are wrong (truncated, bad magic, ...)."""


class ModelError(HartError, ValueError):
    """A model that cannot be loaded, built or exported."""


class UnsupportedOperatorError(ModelError):
    """An ONNX operator HART does not implement (``hart.load`` then falls back to TorchScript)."""


class HartIOError(HartError, OSError):
    """Reading or writing a file failed for another reason than its absence."""


class TorchError(HartError, RuntimeError):
    """libtorch refused an operation (a shape the model cannot take, out of memory, ...)."""


class Interrupted(HartError):
    """The engine stopped on request; what it finished is on disk."""
