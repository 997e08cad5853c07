"""One root error for everything a user can fix; the CLI prints it as one line and exits non-zero.

Every message says what was wrong *and* what to change (file, row, field, allowed values).
"""


class ProjectorError(Exception):
    """Base class: a problem the user can fix. Printed without a traceback by the CLIs."""


class CorpusError(ProjectorError):
    """The corpus could not be read: missing, empty, binary, bad encoding, wrong field names."""


class LLMError(ProjectorError):
    """The LLM endpoint or the embedded local server could not be used."""


class DataError(ProjectorError):
    """A pairs dataset or embedding array is malformed (wrong columns, NaN, single class, ...)."""


class ArtifactError(ProjectorError):
    """A saved projection is corrupt, of an unknown format version, or made for another encoder."""


class EncoderError(ProjectorError):
    """The frozen encoder could not be used: an embeddings endpoint unreachable, refusing the key, not serving
    the model, or answering with vectors that are not one finite vector of the expected dimension per text."""
