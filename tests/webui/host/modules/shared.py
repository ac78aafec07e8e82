"""Stand-in for ``modules.shared``: opts, OptionInfo, cmd_opts, state and folders.

``hide_dirs`` is ``{"visible": not cmd_opts.hide_ui_dir_config}``, the component arguments the
webui gives every setting and field that names a folder; ``restricted_opts`` is the set of
settings ``--hide-ui-dir-config`` freezes (``shared_options.restricted_opts`` in the webui; the
same set object is ``opts.restricted_opts``).
"""

from modules import paths_internal, shared_cmd_options, shared_state
from modules.options import OptionInfo, Options, options_section  # noqa: F401

cmd_opts = shared_cmd_options.cmd_opts
config_filename = cmd_opts.ui_settings_file
hide_dirs = {"visible": not cmd_opts.hide_ui_dir_config}
restricted_opts = {
    "samples_filename_pattern",
    "directories_filename_pattern",
    "outdir_samples",
    "outdir_txt2img_samples",
    "outdir_img2img_samples",
    "outdir_extras_samples",
    "outdir_grids",
    "outdir_txt2img_grids",
    "outdir_save",
    "outdir_init_images",
    "temp_dir",
    "clean_temp_dir_at_start",
}
opts = Options({}, restricted_opts)
state = shared_state.State()
demo = None
models_path = paths_internal.models_path
data_path = paths_internal.data_path
script_path = paths_internal.script_path
extensions_dir = paths_internal.extensions_dir
settings_components = None


def apply_flags():
    """Test helper: recompute what the real module derives from the flags at import."""
    global config_filename
    config_filename = cmd_opts.ui_settings_file
    hide_dirs["visible"] = not cmd_opts.hide_ui_dir_config
