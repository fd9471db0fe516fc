"""Synthetic payment traffic: legitimate habits and labelled fraud typologies, deterministic per seed.

Pure generation (`SyntheticStream`) is separate from delivery (files, Kafka, HTTP), so tests,
the demo, benchmarks and evaluation share the exact same data for a seed.

Public surface:
- `GeneratorConfig`, `SyntheticStream`, `GeneratedBatch`, `Label`, `TYPOLOGIES`: generation.
- `TransactionFile`, `LabelFile`, `format_for`, `read_labels`, `encode_json`: files.
- `KafkaSink`, `HttpSink`, `stream_paced`: real-time delivery.
"""

from vigil.generator.errors import GeneratorConfigError, GeneratorError, SinkError
from vigil.generator.output import FILE_COLUMNS, LabelFile, TransactionFile, encode_json, format_for, read_labels
from vigil.generator.sinks import HttpSink, KafkaSink, stream_paced
from vigil.generator.stream import TYPOLOGIES, GeneratedBatch, GeneratorConfig, Label, SyntheticStream

__all__ = [
    "FILE_COLUMNS",
    "TYPOLOGIES",
    "GeneratedBatch",
    "GeneratorConfig",
    "GeneratorConfigError",
    "GeneratorError",
    "HttpSink",
    "KafkaSink",
    "Label",
    "LabelFile",
    "SinkError",
    "SyntheticStream",
    "TransactionFile",
    "encode_json",
    "format_for",
    "read_labels",
    "stream_paced",
]
