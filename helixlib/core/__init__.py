"""What every layer shares and nothing domain-specific: the one input error, human-readable
units, atomic file writes, integer helpers, rank colours, and the data folder with the one
"preset name or YAML path" resolver. Imports nothing else of helixlib."""

from helixlib.core.errors import HelixInputError, one_of, positive_int
from helixlib.core.files import write_bytes_atomic, write_text_atomic
from helixlib.core.numbers import divisors, factor_pairs
from helixlib.core.presets import DATA_DIR, DEFAULT_CLUSTER, DEFAULT_MODEL, DEFAULT_RUN_MODEL, read_yaml, resolve_preset
from helixlib.core.units import seconds, si, table

__all__ = ["DATA_DIR", "DEFAULT_CLUSTER", "DEFAULT_MODEL", "DEFAULT_RUN_MODEL", "HelixInputError", "divisors",
           "factor_pairs", "one_of", "positive_int", "read_yaml", "resolve_preset", "seconds", "si", "table",
           "write_bytes_atomic", "write_text_atomic"]
