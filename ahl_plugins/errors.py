"""Every exception and warning the library raises on purpose, in one place.

Messages are meant for users: what went wrong, where, and how to fix it. Bad input always raises an
:class:`AHLError` subclass, which the command line prints as one line instead of a traceback.
"""

from __future__ import annotations


class AHLError(Exception):
    """Base class for every error ahl-plugins raises on purpose."""


class PluginError(AHLError):
    """A plugin failed to load or registered something invalid."""


class DuplicateComponentError(PluginError):
    """Two plugins registered the same component name."""


class UnknownComponentError(AHLError, KeyError):
    """A component name that no plugin registered."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class InvalidComponentError(PluginError):
    """A registered object does not satisfy its contract."""


class InvalidOptionsError(AHLError, ValueError):
    """Options that fail a component's pydantic model."""


class DataError(AHLError, ValueError):
    """Bad input data: unreadable files, wrong shapes, impossible splits."""


class NotFittedError(AHLError, RuntimeError):
    """A detector used before ``fit``."""


class ModelFileError(AHLError):
    """A saved model directory that is missing, truncated or incompatible."""


class OutputLockedError(AHLError, RuntimeError):
    """An output directory that another live process is writing (e.g. a second ``ahl compare``)."""


class ExecutorError(AHLError, RuntimeError):
    """Cells cannot run at all where they were sent (workers that do not start, a cluster that is gone)."""


class ReportInputError(AHLError, ValueError):
    """``ahl report`` inputs that are not finished compare directories, or share no rows to compare."""


class TrainingDivergedError(AHLError, FloatingPointError):
    """The loss became NaN or infinite."""


class TemplateError(AHLError, ValueError):
    """A plugin name or target folder that a skeleton cannot be written to."""


class PluginLoadWarning(UserWarning):
    """A plugin failed and was skipped (set AHL_STRICT_PLUGINS=1 to make it fatal)."""


class SmallClusterWarning(UserWarning):
    """k-means produced a cluster too small to be a task's normal set; it was merged."""


class IgnoredFilesWarning(UserWarning):
    """Files a loader left out because it does not read their kind (the command line prints them itself)."""


class LowBitDepthWarning(UserWarning):
    """16-bit images that use under 1/8 of their range (e.g. a 12-bit camera's values in a 16-bit PNG)."""


class DataDriftWarning(UserWarning):
    """A batch being scored differs from the model's training data (read settings, value range, image size,
    brightness, or a median score far above the training normals'); one line per cause, once per batch."""
