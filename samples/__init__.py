"""Sample material for trying and testing ACE without real recordings.

==========================  ======================================================================
name                        what it is
==========================  ======================================================================
:func:`make_sample_show`    generates (once, then reuses) a live-commerce / game stream with
                            planted highlights, decoys and product pitches, in English or Mandarin:
                            ``video`` (MP4), ``events`` (ACE JSONL), ``truth`` (JSON) and
                            ``products`` (the product list, JSON)
:class:`SampleShow`         the paths it returns
:data:`TRUTH_SCHEMA`        the truth file's fields
==========================  ======================================================================

``python -m samples --out DIR --duration 360 --seed 7`` does the same from a shell.
"""

from __future__ import annotations

from samples.show import TRUTH_SCHEMA, SampleError, SampleShow, make_sample_show

__all__ = ["TRUTH_SCHEMA", "SampleError", "SampleShow", "make_sample_show"]
