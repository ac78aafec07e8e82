"""The Tagger tab: Gradio building blocks shared by the webui extension and ``tagger ui``.

``form``, ``presets``, ``actions`` and ``host`` are Gradio-free; ``blocks`` builds the widgets
and ``app`` serves them standalone. Nothing here imports the webui (``modules``).
"""
