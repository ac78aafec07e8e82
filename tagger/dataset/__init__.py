"""The dataset workbench: review, edit and clean a folder of images and their caption files.

A dataset is a folder tree of images, each with its caption file (``<stem>.txt``, or any
extension) and an optional JSON sidecar, read lazily (``tagger.dataset.reader``). On it:

- ``stats``: tag frequencies, co-occurrence, caption lengths in CLIP tokens, untagged images,
  tags seen once (``tagger.dataset.stats``);
- ``edits``: bulk rename/replace/remove/add/reorder/de-duplicate/clean-up of captions, each with
  a dry run (the diff) and a journal that ``undo`` replays byte for byte
  (``tagger.dataset.edits``, ``tagger.dataset.journal``);
- ``checks``: exact and near duplicates, broken, tiny and extreme images, images with text (OCR),
  CLIP outliers and caption-image mismatch (``tagger.dataset.checks``);
- ``report``: one self-contained HTML file (``tagger.dataset.report``).

Everything here is host-free and Gradio-free; the CLI (``tagger dataset``), the tab's Dataset
sub-tab and the HTTP API call the same functions. Every file is written through
``tagger.safeio``; captions are read with ``tagger.safeio``'s strict UTF-8 reader.
"""
