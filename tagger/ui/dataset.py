"""The Dataset sub-tab: browse, filter, edit and clean a dataset beside Single image and Batch.

A paged gallery of the dataset's images with their captions (one page of thumbnails at a time,
from the disk cache), a filter line (taggui's language, ``tagger.dataset.filters``), an All tags
pane with counts (click a tag to filter by it), a caption editor for the selected image (with
autocomplete from the dataset's own tags, in ``javascript/tagger_dataset.js``; saved through the
journal, so it can be undone), bulk edits with a preview of the diff and undo, and the checks
with their findings as galleries (keep, move to the trash, open in the editor). In the webui,
*Send to txt2img* sends the selected image's caption.

Gradio 3.41 and 4.x alike; every element id starts with ``tagger_ds_``. The core work is done by
``tagger.dataset`` (the same calls as the CLI and the API).
"""

# Paths stay strings here (os.path): a dataset walk handles millions of them.
# ruff: noqa: PTH118

from __future__ import annotations

import html
import json
import logging
import os
from pathlib import Path
from typing import Any

import gradio as gr

from tagger.dataset.cleanup import cleanup_names
from tagger.dataset.index import PAGE_SIZE, DatasetIndex
from tagger.dataset.options import CheckOptions, DatasetOptions, EditSpec
from tagger.errors import OptionsError, TaggerError
from tagger.ui.host import Host

log = logging.getLogger("tagger")

#: Tags shown in the All tags pane (the most frequent first).
TAGS_SHOWN = 300
ORDERS = ["none", "frequency", "alphabetical", "reverse", "shuffle"]
DEFAULT_CHECKS = ["duplicates", "near_duplicates", "broken", "small", "aspect"]


def _supports(component: Any, argument: str) -> bool:
    import inspect

    return argument in inspect.signature(component.__init__).parameters


def parse_pairs(text: str) -> dict[str, str]:
    """``old=new; old2=new2`` (or one per line) as a mapping.

    >>> parse_pairs("long_hair=long hair; cat = feline")
    {'long_hair': 'long hair', 'cat': 'feline'}
    """
    pairs: dict[str, str] = {}
    for part in text.replace("\n", ";").split(";"):
        if not part.strip():
            continue
        old, equals, new = part.partition("=")
        if not equals or not old.strip():
            raise OptionsError(f"{part.strip()!r} is not old=new")
        pairs[old.strip()] = new.strip()
    return pairs


def split_list(text: str) -> list[str]:
    """A comma-separated list.

    >>> split_list("a, b,,c ")
    ['a', 'b', 'c']
    """
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def error_text(exc: BaseException) -> str:
    """An error as a line for the status box."""
    return f"Error: {exc}"


def tags_html(counts: list[tuple[str, int]], total: int) -> str:
    """The All tags pane: one button per tag (clicking filters by it, javascript side) and the
    vocabulary for the caption editor's autocomplete."""
    shown = counts[:TAGS_SHOWN]
    buttons = "".join(
        f"<button class='tagger_ds_tag' data-tag='{html.escape(tag, quote=True)}'>"
        f"{html.escape(tag)} <span class='tagger_ds_count'>{count}</span></button>"
        for tag, count in shown
    )
    more = (
        f"<div class='tagger_ds_more'>{len(counts) - len(shown)} more tags not shown</div>"
        if len(counts) > len(shown)
        else ""
    )
    vocab = html.escape(json.dumps([tag for tag, _ in counts[:5000]]), quote=True)
    return (
        f"<div id='tagger_ds_vocab' data-tags='{vocab}'></div>"
        f"<div class='tagger_ds_tagcount'>{len(counts)} tags over {total} images</div>"
        f"<div class='tagger_ds_tags'>{buttons}</div>{more}"
    )


class DatasetUI:
    """Builds the Dataset sub-tab inside the current Blocks and wires its events."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.indexes: dict[str, DatasetIndex] = {}
        self.findings: dict[str, list[dict[str, Any]]] = {}
        self.w: dict[str, Any] = {}

    # -- state --------------------------------------------------------------------------------
    def key(self, folder: str, extension: str, recursive: bool) -> str:
        """The key of a loaded dataset."""
        return json.dumps([os.path.abspath(folder or "."), extension, bool(recursive)])

    def index(self, key: str) -> DatasetIndex:
        """The loaded dataset (``OptionsError`` before Load)."""
        found = self.indexes.get(key)
        if found is None:
            raise OptionsError("load a dataset folder first (Load)")
        return found

    def check_folders(self) -> None:
        """Refuse folder work when the host disallows it (``--hide-ui-dir-config``)."""
        if self.host.folders_disabled:
            raise OptionsError(f"the Dataset tab is not available: {self.host.folders_disabled}")

    # -- layout -------------------------------------------------------------------------------
    def build(self) -> dict[str, Any]:
        """Lay out the sub-tab (call inside ``gr.Tab``); returns its components."""
        w = self.w
        hidden = bool(self.host.folders_disabled)
        w["note"] = gr.Markdown(
            f"The Dataset tab is not available: {self.host.folders_disabled}." if hidden else "",
            visible=hidden,
            elem_id="tagger_ds_note",
        )
        with gr.Row(visible=not hidden):
            w["folder"] = gr.Textbox(
                label="Dataset folder",
                placeholder="path/to/dataset",
                elem_id="tagger_ds_folder",
                scale=4,
            )
            w["extension"] = gr.Textbox(
                label="Caption extension", value=".txt", elem_id="tagger_ds_extension", scale=1
            )
        with gr.Row():
            w["recursive"] = gr.Checkbox(
                label="Sub-folders", value=True, elem_id="tagger_ds_recursive"
            )
            w["load"] = gr.Button("Load", variant="primary", elem_id="tagger_ds_load")
        w["key"] = gr.State("")
        w["selection"] = gr.State([])
        w["page_number"] = gr.State(0)
        w["expected"] = gr.State(None)
        w["status"] = gr.Markdown("", elem_id="tagger_ds_status")
        with gr.Row():
            w["filter"] = gr.Textbox(
                label="Filter",
                placeholder='tag:cat AND NOT tag:dog, tags:<5, caption:"red car", name:, path:',
                elem_id="tagger_ds_filter",
                scale=4,
            )
            w["apply_filter"] = gr.Button("Filter", elem_id="tagger_ds_apply_filter", scale=1)
        gallery_args = {"columns": 4} if _supports(gr.Gallery, "columns") else {}
        if _supports(gr.Gallery, "height"):
            gallery_args["height"] = 420
        if _supports(gr.Gallery, "allow_preview"):
            gallery_args["allow_preview"] = False
        w["gallery"] = gr.Gallery(
            label="Images", show_label=False, elem_id="tagger_ds_gallery", **gallery_args
        )
        with gr.Row():
            w["prev"] = gr.Button("Previous page", elem_id="tagger_ds_prev")
            w["page"] = gr.Markdown("", elem_id="tagger_ds_page")
            w["next"] = gr.Button("Next page", elem_id="tagger_ds_next")
        with gr.Accordion("All tags (click one to filter)", open=True, elem_id="tagger_ds_tags"):
            w["tags"] = gr.HTML("", elem_id="tagger_ds_tags_html")
        with gr.Accordion("Caption of the selected image", open=True, elem_id="tagger_ds_edit"):
            w["selected"] = gr.Textbox(
                label="Selected image", interactive=False, elem_id="tagger_ds_selected"
            )
            w["image"] = gr.Image(
                label="Image",
                type="pil",
                interactive=False,
                elem_id="tagger_ds_image",
                height=280 if _supports(gr.Image, "height") else None,
            )
            w["caption"] = gr.Textbox(
                label="Caption (tags autocomplete from this dataset; Tab accepts)",
                lines=3,
                elem_id="tagger_ds_caption",
            )
            with gr.Row():
                w["save"] = gr.Button("Save caption", variant="primary", elem_id="tagger_ds_save")
                w["trash_selected"] = gr.Button(
                    "Move image to trash", elem_id="tagger_ds_trash_selected"
                )
            if self.host.send_to is not None:
                w["paste_text"] = gr.Textbox(visible=False, elem_id="tagger_ds_paste_text")
                with gr.Row(elem_id="tagger_ds_send_to"):
                    self.host.send_to(w["paste_text"], w["image"])
        self._build_bulk()
        self._build_checks()
        self._wire()
        return w

    def _build_bulk(self) -> None:
        w = self.w
        with gr.Accordion("Bulk edit", open=False, elem_id="tagger_ds_bulk"):
            w["rename"] = gr.Textbox(
                label="Rename tags (old=new; ...; wildcards * and ?)", elem_id="tagger_ds_rename"
            )
            w["remove"] = gr.Textbox(
                label="Remove tags (comma-separated)", elem_id="tagger_ds_remove"
            )
            with gr.Row():
                w["add_first"] = gr.Textbox(label="Add first", elem_id="tagger_ds_add_first")
                w["add_last"] = gr.Textbox(label="Add last", elem_id="tagger_ds_add_last")
                w["trigger"] = gr.Textbox(label="Trigger word (first)", elem_id="tagger_ds_trigger")
            with gr.Row():
                w["order"] = gr.Dropdown(
                    choices=ORDERS, value="none", label="Reorder", elem_id="tagger_ds_order"
                )
                w["keep_first"] = gr.Number(
                    value=0, precision=0, label="Keep the first N", elem_id="tagger_ds_keep_first"
                )
                w["dedupe"] = gr.Checkbox(label="De-duplicate", elem_id="tagger_ds_dedupe")
            w["cleanup"] = gr.CheckboxGroup(
                choices=cleanup_names(), label="Clean-up", elem_id="tagger_ds_cleanup"
            )
            w["only_filtered"] = gr.Checkbox(
                label="Only the images the filter shows", value=True, elem_id="tagger_ds_only"
            )
            with gr.Row():
                w["preview"] = gr.Button("Preview", elem_id="tagger_ds_preview")
                w["apply"] = gr.Button("Apply", variant="primary", elem_id="tagger_ds_apply")
                w["undo"] = gr.Button("Undo last change", elem_id="tagger_ds_undo")
            w["diff"] = gr.Textbox(
                label="Preview / result",
                lines=10,
                max_lines=30,
                interactive=False,
                elem_id="tagger_ds_diff",
            )

    def _build_checks(self) -> None:
        from tagger.dataset.checks import ALL_CHECKS

        w = self.w
        defaults = CheckOptions()
        with gr.Accordion("Checks", open=False, elem_id="tagger_ds_checks"):
            w["checks"] = gr.CheckboxGroup(
                choices=list(ALL_CHECKS),
                value=DEFAULT_CHECKS,
                label="Checks",
                elem_id="tagger_ds_check_names",
            )
            with gr.Row():
                w["hash_distance"] = gr.Number(
                    value=defaults.hash_distance,
                    precision=0,
                    label="Near duplicates: bits",
                    elem_id="tagger_ds_hash_distance",
                )
                w["min_side"] = gr.Number(
                    value=defaults.min_side,
                    precision=0,
                    label="Small: short side under",
                    elem_id="tagger_ds_min_side",
                )
                w["max_aspect"] = gr.Number(
                    value=defaults.max_aspect, label="Aspect over", elem_id="tagger_ds_max_aspect"
                )
                w["text_area"] = gr.Number(
                    value=defaults.text_area,
                    label="Text covers over",
                    elem_id="tagger_ds_text_area",
                )
            w["run_checks"] = gr.Button("Run checks", variant="primary", elem_id="tagger_ds_run")
            w["check_status"] = gr.Markdown("", elem_id="tagger_ds_check_status")
            w["check_choice"] = gr.Dropdown(
                choices=[], label="Findings of", elem_id="tagger_ds_check_choice"
            )
            args = {"columns": 6} if _supports(gr.Gallery, "columns") else {}
            if _supports(gr.Gallery, "allow_preview"):
                args["allow_preview"] = False
            w["findings"] = gr.Gallery(
                label="Findings", show_label=False, elem_id="tagger_ds_findings", **args
            )
            w["finding"] = gr.Textbox(
                label="Selected finding", interactive=False, elem_id="tagger_ds_finding"
            )
            with gr.Row():
                w["keep"] = gr.Button("Keep", elem_id="tagger_ds_keep")
                w["trash"] = gr.Button("Move to trash", elem_id="tagger_ds_trash")
                w["open"] = gr.Button("Open", elem_id="tagger_ds_open")

    # -- events -------------------------------------------------------------------------------
    def _wire(self) -> None:
        w = self.w
        view = [w["gallery"], w["page"], w["page_number"]]
        load_out = [w["key"], w["selection"], w["status"], w["tags"], *view]
        w["load"].click(
            self.on_load, [w["folder"], w["extension"], w["recursive"], w["filter"]], load_out
        )
        for event in (w["apply_filter"].click, w["filter"].submit):
            event(
                self.on_filter,
                [w["key"], w["filter"]],
                [w["selection"], w["status"], w["tags"], *view],
            )
        w["prev"].click(
            self.on_page, [w["key"], w["selection"], w["page_number"], gr.State(-1)], view
        )
        w["next"].click(
            self.on_page, [w["key"], w["selection"], w["page_number"], gr.State(1)], view
        )
        editor = [w["selected"], w["image"], w["caption"], w["expected"]]
        w["gallery"].select(self.on_select, [w["key"], w["selection"], w["page_number"]], editor)
        w["save"].click(
            self.on_save,
            [
                w["key"],
                w["selected"],
                w["caption"],
                w["expected"],
                w["selection"],
                w["page_number"],
            ],
            [w["status"], w["expected"], w["tags"], w["gallery"], w["page"]],
        )
        w["trash_selected"].click(
            self.on_trash_selected,
            [w["key"], w["selected"], w["filter"]],
            [w["selection"], w["status"], w["tags"], *view, *editor],
        )
        if "paste_text" in w:
            w["caption"].change(
                self.on_paste_text,
                [w["caption"], w["selected"], w["extension"]],
                [w["paste_text"]],
            )
        bulk = [
            w["rename"],
            w["remove"],
            w["add_first"],
            w["add_last"],
            w["trigger"],
            w["order"],
            w["keep_first"],
            w["dedupe"],
            w["cleanup"],
            w["only_filtered"],
            w["filter"],
        ]
        w["preview"].click(self.on_preview, [w["key"], *bulk], [w["diff"]])
        after_change = [w["diff"], w["selection"], w["status"], w["tags"], *view]
        w["apply"].click(self.on_apply, [w["key"], *bulk], after_change)
        w["undo"].click(self.on_undo, [w["key"], w["filter"]], after_change)
        checks = [w["checks"], w["hash_distance"], w["min_side"], w["max_aspect"], w["text_area"]]
        w["run_checks"].click(
            self.on_checks,
            [w["key"], *checks],
            [w["check_status"], w["check_choice"], w["findings"]],
        )
        w["check_choice"].change(
            self.on_check_choice, [w["key"], w["check_choice"]], [w["findings"]]
        )
        w["findings"].select(self.on_finding, [w["key"], w["check_choice"]], [w["finding"]])
        w["keep"].click(
            self.on_keep,
            [w["key"], w["check_choice"], w["finding"]],
            [w["findings"], w["finding"], w["check_status"]],
        )
        w["trash"].click(
            self.on_trash_finding,
            [w["key"], w["check_choice"], w["finding"], w["filter"]],
            [
                w["findings"],
                w["finding"],
                w["check_status"],
                w["selection"],
                w["status"],
                w["tags"],
                *view,
            ],
        )
        w["open"].click(self.on_open, [w["key"], w["finding"]], editor)

    def on_paste_text(self, caption: str, image: str = "", extension: str = ".txt") -> str:
        """What Send to txt2img pastes: the caption, as the host reads a prompt (with a
        settings line of the tagger's own naming the image, which the host does not paste)."""
        text = caption or ""
        if self.host.infotext is None:
            return text
        parameters = {
            "Tagger": "dataset caption",
            "Tagger dataset image": image or "-",
            "Tagger caption extension": extension or ".txt",
        }
        return self.host.infotext(text, parameters)

    # -- handlers -----------------------------------------------------------------------------
    def _view(self, index: DatasetIndex, selection: list[int], number: int) -> list[Any]:
        """Gallery items, page line and page number for a page of the selection."""
        from PIL import Image

        pages = index.pages(selection)
        number = max(0, min(number, pages - 1))
        items = []
        for item in index.page(selection, number):
            label = (
                f"{item.entry.relative}: {item.caption}" if item.caption else item.entry.relative
            )
            if item.thumbnail is not None:
                with Image.open(item.thumbnail) as picture:
                    items.append((picture.copy(), label))
            else:
                items.append((Image.new("RGB", (64, 64), (200, 200, 200)), label + " (no preview)"))
        line = f"Page {number + 1} of {pages} ({len(selection)} images)"
        return [items, line, number]

    def _summary(self, index: DatasetIndex, selection: list[int]) -> str:
        unreadable = f", {len(index.unreadable)} captions unreadable" if index.unreadable else ""
        return (
            f"{len(index.entries)} images in {html.escape(index.root)}; {len(selection)} shown"
            f"{unreadable}"
        )

    def on_load(self, folder: str, extension: str, recursive: bool, where: str) -> list[Any]:
        """Scan a folder and show its first page."""
        keep = [gr.update()] * 7
        try:
            self.check_folders()
            if not folder or not Path(folder).is_dir():
                raise OptionsError(f"{folder!r} is not a folder")
            options = DatasetOptions(caption_extension=extension or ".txt", recursive=recursive)
            key = self.key(folder, options.caption_extension, recursive)
            index = DatasetIndex([folder], options).scan()
            self.indexes[key] = index
            selection = index.select(where or "")
        except (TaggerError, ValueError) as exc:
            return [keep[0], keep[1], error_text(exc), *keep[3:]]
        counts = index.tag_counts(selection)
        return [
            key,
            selection,
            self._summary(index, selection),
            tags_html(counts, len(selection)),
            *self._view(index, selection, 0),
        ]

    def on_filter(self, key: str, where: str) -> list[Any]:
        """Apply the filter line."""
        try:
            index = self.index(key)
            selection = index.select(where or "")
        except TaggerError as exc:
            return [gr.update(), error_text(exc), *([gr.update()] * 4)]
        return [
            selection,
            self._summary(index, selection),
            tags_html(index.tag_counts(selection), len(selection)),
            *self._view(index, selection, 0),
        ]

    def on_page(self, key: str, selection: list[int], number: int, step: int) -> list[Any]:
        """Previous / next page."""
        try:
            index = self.index(key)
        except TaggerError:
            return [gr.update()] * 3
        return self._view(index, selection, int(number) + int(step))

    def _editor(self, index: DatasetIndex, position: int) -> list[Any]:
        from tagger.image import load_image

        entry = index.entries[position]
        try:
            picture = load_image(entry.image)
            picture.thumbnail((1024, 1024))
        except TaggerError:
            picture = None
        expected = index.caption_bytes(position).decode("latin-1")
        return [entry.relative, picture, index.captions[position], expected]

    def on_select(
        self, key: str, selection: list[int], number: int, event: gr.SelectData
    ) -> list[Any]:
        """An image clicked in the gallery: show it and its caption in the editor."""
        try:
            index = self.index(key)
            position = selection[int(number) * PAGE_SIZE + int(event.index)]
        except (TaggerError, IndexError, TypeError):
            return [gr.update()] * 4
        return self._editor(index, position)

    def on_save(
        self,
        key: str,
        relative: str,
        caption: str,
        expected: str | None,
        selection: list[int],
        number: int,
    ) -> list[Any]:
        """Write the edited caption (journaled; refused when the file changed meanwhile)."""
        from tagger.dataset.edits import write_caption
        from tagger.dataset.journal import journal_dir

        keep = [gr.update()] * 4
        try:
            index = self.index(key)
            position = index.find(relative or "")
            if position is None:
                raise OptionsError("select an image first")
            entry = index.entries[position]
            journal = write_caption(
                entry.image,
                caption or "",
                index.dataset,
                journal_folder=journal_dir(index.paths),
                expected=expected.encode("latin-1") if expected is not None else None,
            )
            index.refresh(position)
        except (TaggerError, OSError) as exc:
            return [error_text(exc), *keep]
        note = f"Saved {relative} (journal {journal})" if journal else f"{relative}: no change"
        view = self._view(index, selection, int(number))
        return [
            note,
            index.caption_bytes(position).decode("latin-1"),
            tags_html(index.tag_counts(selection), len(selection)),
            view[0],
            view[1],
        ]

    def _spec(
        self,
        rename: str,
        remove: str,
        add_first: str,
        add_last: str,
        trigger: str,
        order: str,
        keep_first: float,
        dedupe: bool,
        cleanup: list[str],
    ) -> EditSpec:
        return EditSpec(
            rename=parse_pairs(rename or ""),
            remove=split_list(remove),
            add_first=split_list(add_first),
            add_last=split_list(add_last),
            trigger=(trigger or "").strip(),
            order=order or "none",
            keep_first=int(keep_first or 0),
            dedupe=bool(dedupe),
            cleanup=list(cleanup or []),
        )

    def _edit(self, key: str, values: tuple[Any, ...], dry_run: bool) -> Any:
        from tagger.dataset.edits import run_edit

        index = self.index(key)
        *spec_values, only_filtered, where = values
        spec = self._spec(*spec_values)
        return index, run_edit(
            index.paths,
            spec,
            index.dataset,
            dry_run=dry_run,
            where=(where or "") if only_filtered else "",
            diffs=200 if dry_run else -1,
        )

    def on_preview(self, key: str, *values: Any) -> str:
        """The diff the bulk edit would make."""
        try:
            _, result = self._edit(key, values, dry_run=True)
        except (TaggerError, ValueError) as exc:
            return error_text(exc)
        head = f"Would change {result.changed} of {result.examined} captions.\n"
        return head + result.diff()

    def _after_change(self, index: DatasetIndex, where: str, message: str) -> list[Any]:
        selection = index.select(where or "")
        return [
            message,
            selection,
            self._summary(index, selection),
            tags_html(index.tag_counts(selection), len(selection)),
            *self._view(index, selection, 0),
        ]

    def on_apply(self, key: str, *values: Any) -> list[Any]:
        """Apply the bulk edit (journaled)."""
        try:
            index, result = self._edit(key, values, dry_run=False)
        except (TaggerError, ValueError) as exc:
            return [error_text(exc), *([gr.update()] * 6)]
        changed = {change.path for change in result.changes}
        for position, entry in enumerate(index.entries):
            if entry.caption in changed:
                index.refresh(position)
        failed = "".join(f"\nfailed: {p}: {r}" for p, r in result.failed)
        message = (
            f"Changed {result.changed} of {result.examined} captions"
            + (
                f" (journal {result.journal}: Undo last change restores them)"
                if result.journal
                else ""
            )
            + failed
        )
        return self._after_change(index, values[-1], message)

    def on_undo(self, key: str, where: str) -> list[Any]:
        """Undo the dataset's last journal (an edit, a saved caption or a move to the trash)."""
        from tagger.dataset.journal import journal_dir, undo

        try:
            index = self.index(key)
            result = undo(journal_dir(index.paths))
            index.scan()
        except TaggerError as exc:
            return [error_text(exc), *([gr.update()] * 6)]
        conflicts = "".join(f"\nkept: {p}: {r}" for p, r in result.conflicts)
        message = (
            f"Undid {result.journal}: restored {result.restored} files, "
            f"{len(result.conflicts)} conflicts{conflicts}"
        )
        return self._after_change(index, where, message)

    def _finding_items(self, key: str, check: str) -> list[Any]:
        from PIL import Image

        from tagger.dataset.thumbs import thumbnail

        index = self.index(key)
        items = []
        for finding in self.findings.get(key, []):
            if finding["check"] != check:
                continue
            path = os.path.join(index.root, finding["path"])
            thumb = thumbnail(path, 192)
            label = f"{finding['path']}: {finding['detail']}"
            if thumb is not None:
                with Image.open(thumb) as picture:
                    items.append((picture.copy(), label))
            else:
                items.append((Image.new("RGB", (64, 64), (200, 200, 200)), label))
        return items

    def on_checks(
        self, key: str, checks: list[str], bits: float, side: float, aspect: float, area: float
    ) -> list[Any]:
        """Run the checks on the loaded dataset."""
        from tagger.dataset.checks import run_checks

        try:
            index = self.index(key)
            options = CheckOptions(
                checks=list(checks or DEFAULT_CHECKS),
                hash_distance=int(bits),
                min_side=int(side),
                max_aspect=float(aspect),
                text_area=float(area),
            )
            result = run_checks(index.paths, options, index.dataset)
        except (TaggerError, ValueError) as exc:
            return [error_text(exc), gr.update(), gr.update()]
        self.findings[key] = [f.to_dict() for f in result.findings]
        counts = result.to_dict()["counts"]
        found = [name for name in result.checks if counts.get(name)]
        skipped = "".join(f"; {name} skipped: {why}" for name, why in result.skipped.items())
        status = (
            f"{result.images} images checked: "
            + ", ".join(f"{name} {counts.get(name, 0)}" for name in result.checks)
            + skipped
        )
        first = found[0] if found else None
        return [
            status,
            gr.update(choices=found, value=first),
            self._finding_items(key, first) if first else [],
        ]

    def on_check_choice(self, key: str, check: str) -> list[Any]:
        """Show one check's findings."""
        try:
            return self._finding_items(key, check) if check else []
        except TaggerError:
            return []

    def _check_findings(self, key: str, check: str) -> list[dict[str, Any]]:
        return [f for f in self.findings.get(key, []) if f["check"] == check]

    def on_finding(self, key: str, check: str, event: gr.SelectData) -> str:
        """A finding clicked: its path."""
        try:
            return self._check_findings(key, check)[int(event.index)]["path"]
        except (IndexError, TypeError):
            return ""

    def _drop_finding(self, key: str, check: str, path: str) -> None:
        self.findings[key] = [
            f for f in self.findings.get(key, []) if not (f["check"] == check and f["path"] == path)
        ]

    def on_keep(self, key: str, check: str, path: str) -> list[Any]:
        """Keep the image: drop the finding from the list."""
        if not path:
            return [gr.update(), "", "Select a finding first"]
        self._drop_finding(key, check, path)
        return [self._finding_items(key, check), "", f"Kept {path}"]

    def _trash(self, index: DatasetIndex, path: str) -> str:
        from tagger.dataset.fixes import trash_images

        moved = trash_images(index.paths, [path], index.dataset)
        index.scan()
        if moved["failed"]:
            raise OptionsError("; ".join(f"{p}: {r}" for p, r in moved["failed"]))
        return f"Moved {path} to the trash (journal {moved['journal']}: Undo last change)"

    def on_trash_finding(self, key: str, check: str, path: str, where: str) -> list[Any]:
        """Move the finding's image (and caption, sidecar) to the trash."""
        try:
            if not path:
                raise OptionsError("select a finding first")
            index = self.index(key)
            message = self._trash(index, path)
        except (TaggerError, OSError) as exc:
            return [gr.update(), gr.update(), error_text(exc), *([gr.update()] * 6)]
        for name in {f["check"] for f in self.findings.get(key, [])}:
            self._drop_finding(key, name, path)
        after = self._after_change(index, where, message)
        return [self._finding_items(key, check), "", message, *after[1:]]

    def on_trash_selected(self, key: str, relative: str, where: str) -> list[Any]:
        """Move the selected image to the trash."""
        try:
            if not relative:
                raise OptionsError("select an image first")
            index = self.index(key)
            message = self._trash(index, relative)
        except (TaggerError, OSError) as exc:
            return [gr.update(), error_text(exc), *([gr.update()] * 8)]
        after = self._after_change(index, where, message)
        return [after[1], message, after[3], *after[4:], "", None, "", None]

    def on_open(self, key: str, path: str) -> list[Any]:
        """Open the finding's image in the caption editor."""
        try:
            index = self.index(key)
            position = index.find(path or "")
        except TaggerError:
            position = None
        if position is None:
            return [gr.update()] * 4
        return self._editor(index, position)


def build_dataset_tab(host: Host) -> DatasetUI:
    """Build the Dataset sub-tab inside the current ``gr.Tab``; returns its builder."""
    ui = DatasetUI(host)
    ui.build()
    return ui
