"""The series' plot style and the slider helper that every figure module uses."""

from __future__ import annotations

import matplotlib.pyplot as plt

STYLE = {"figure.dpi": 100, "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False,
         "axes.spines.right": False, "font.size": 11}


def style():
    """A context manager with the series' plot style: ``with viz.style(): fig, ax = plt.subplots()``."""
    return plt.rc_context(STYLE)


def sliders(fn, **controls):
    """Show ``controls`` (name -> ipywidgets slider) above the output of ``fn(**values)``; return the box.

    ``fn`` should draw one figure and call ``plt.show()``. Sliders should use ``continuous_update=False``
    so the figure redraws on release, not on every pixel of a drag.
    """
    import ipywidgets as widgets
    from IPython.display import display

    out = widgets.interactive_output(fn, controls)
    box = widgets.VBox([widgets.HBox(list(controls.values())), out])
    display(box)
    return box


