"""Quality measured on real media (``ace eval``): speech recognition, caption timing, scene cuts
and clip boundaries, each next to a reference where one exists.

=================  ===========================================================================
``speech``         word/character error rate per model, whole-clip vs live windows, speed
``captions``       transcript timing against human-timed captions (friday.vtt)
``scenes``         scene-cut precision/recall/F1 (±2 frames) vs PySceneDetect, frames per second
``boundaries``     clips that start or end inside a spoken word; exact-cut error in frames
``suite``          runs them all over a data folder and renders one table
=================  ===========================================================================

Every function takes the data folder (default ``Settings().eval_data``, ``../shared/data``) and
returns plain dicts, so the same numbers print as a table or as JSON.
"""
