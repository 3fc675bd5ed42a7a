"""geolab: a notebook-driven course and lab for Geography-Aware Self-Supervised Learning.

Ayush et al., "Geography-Aware Self-Supervised Learning", ICCV 2021 (arXiv 2011.09980).
"""

__version__ = "0.2.0"
