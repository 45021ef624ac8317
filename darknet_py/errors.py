"""The project's error types: every refusal of a user file is one of these."""


class DarknetError(Exception):
    """Base of every error this package raises for bad input."""


class CfgError(DarknetError):
    """A .cfg (or .data) file that cannot be read as Darknet would, with file:line context."""

    def __init__(self, message, *, file=None, line=None, section=None, option=None):
        self.file, self.line, self.section, self.option = file, line, section, option
        where = str(file) if file is not None else "<cfg>"
        if line is not None:
            where += f":{line}"
        if section is not None:
            where += f": [{section}]"
        if option is not None:
            where += f" option '{option}'"
        super().__init__(f"{where}: {message}")


class WeightsError(DarknetError):
    """A .weights file that does not match its cfg, with byte offsets and the layer."""

    def __init__(self, message, *, file=None):
        self.file = file
        super().__init__(f"{file}: {message}" if file is not None else message)


class ImageError(DarknetError):
    """An image file that cannot be decoded."""


class TrainingError(DarknetError):
    """Training cannot go on (non-finite loss that persists, a cfg that cannot be trained, an
    unwritable backup folder or a full disk)."""
