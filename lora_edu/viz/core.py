"""The series' plot style and the slider helper that every figure module uses."""

from __future__ import annotations

import threading

import matplotlib.pyplot as plt

from ..notebook_meta import WIDGET_VIEW

# Slider callbacks can run on more than one thread (ipykernel 7 handles widget messages in subshells), and
# matplotlib's text layout (its mathtext parser) is not thread-safe: quick slider moves broke a figure with
# "ParseException" in the browser test. One drawing at a time.
_DRAWING = threading.RLock()

STYLE = {"figure.dpi": 100, "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False,
         "axes.spines.right": False, "font.size": 11}


def style():
    """A context manager with the series' plot style: ``with viz.style(): fig, ax = plt.subplots()``."""
    return plt.rc_context(STYLE)


def sliders(fn, **controls) -> None:
    """Show ``controls`` (name -> ipywidgets slider) above the output of ``fn(**values)``.

    Returns nothing, so a cell that ends with ``viz.sliders(...)`` shows the widget once (a returned widget
    would be displayed a second time as the cell's result).

    ``fn`` should draw one figure and call ``plt.show()``. Sliders should use ``continuous_update=False``
    so the figure redraws on release, not on every pixel of a drag.

    One figure per slider, wherever the notebook is read: the widget is displayed as one output that also
    carries a PNG of the figure at the sliders' first values. A live front end (JupyterLab, Colab) renders
    the widget, whose own figure follows the sliders; a static viewer (GitHub, nbviewer, nbconvert, CI)
    cannot run widgets and shows the PNG instead. ``make notebooks`` keeps only that PNG in the committed file.
    """
    import ipywidgets as widgets
    from IPython.display import display

    def draw(**values):
        with _DRAWING:
            fn(**values)
            plt.show()  # inside the lock too: rendering lays out the text again

    out = widgets.interactive_output(draw, controls)
    box = widgets.VBox([widgets.HBox(list(controls.values())), out])
    bundle = {"text/plain": "Sliders (run the notebook to move them): " +
                            ", ".join(f"{name} = {c.value}" for name, c in controls.items()),
              WIDGET_VIEW: {"version_major": 2, "version_minor": 0, "model_id": box.model_id}}
    with _DRAWING:
        png = static_png(fn, {name: c.value for name, c in controls.items()})
    if png is not None:
        bundle["image/png"] = png
    display(bundle, raw=True)


def static_png(fn, values: dict) -> str | None:
    """The PNG (base64) of the last figure ``fn(**values)`` shows, captured so that nothing is displayed.

    What ``fn`` prints is captured too and dropped: the live widget prints it under its own figure.
    """
    from IPython.utils.capture import capture_output

    before = set(plt.get_fignums())
    with capture_output(stdout=True, stderr=False) as captured:
        fn(**values)
        if set(plt.get_fignums()) - before:  # drawn but not shown yet (fn without plt.show())
            plt.show()
    for num in set(plt.get_fignums()) - before:  # the inline backend closes shown figures; others do not
        plt.close(num)
    pngs = [o.data["image/png"] for o in captured.outputs if "image/png" in o.data]
    return pngs[-1] if pngs else None
