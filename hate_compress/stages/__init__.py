"""Pipeline stages; importing this package registers them in `hate_compress.stages.state.STAGES`."""

from hate_compress.stages import assistant, kd, mutual, teacher  # noqa: F401

try:  # the compression stages need the compression package (torchao, bitsandbytes)
    from hate_compress.stages import compression  # noqa: F401
except ImportError as exc:  # pragma: no cover - reported when the stage is requested
    import logging

    logging.getLogger(__name__).debug("compression stages unavailable: %s", exc)
