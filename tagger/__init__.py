"""tagger: tag and caption images with WD14 ONNX taggers.

The package root is deliberately light: importing it loads no model runtime, no NumPy and no
Pillow. Heavy libraries are imported inside the functions that use them.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
