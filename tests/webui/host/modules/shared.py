"""Stand-in for ``modules.shared``: opts, OptionInfo, cmd_opts, state and folders."""

import argparse

from modules import paths_internal, shared_state
from modules.options import OptionInfo, Options, options_section  # noqa: F401

cmd_opts = argparse.Namespace(
    use_cpu=[],
    device_id=None,
    no_half=False,
    precision="autocast",
    api_auth=None,
    nowebui=False,
    api=False,
    skip_install=False,
)
opts = Options({}, set())
state = shared_state.State()
models_path = paths_internal.models_path
data_path = paths_internal.data_path
