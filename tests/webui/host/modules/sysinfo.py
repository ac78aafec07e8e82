"""Stand-in for Forge's ``modules.sysinfo.set_config``, what Forge's ``POST /sdapi/v1/options``
calls: every changed key goes through ``opts.set(key, value, is_api=is_api)`` with ``is_api``
False by default, so on Forge ``restrict_api`` does not keep an API client from changing a
setting; ``component_args`` ``visible: False`` (``--hide-ui-dir-config``) still does.
"""

from typing import Any


def set_config(req: dict[str, Any], is_api=False, run_callbacks=True, save_config=True):
    from modules import shared

    for k, v in req.items():
        if v == shared.opts.data.get(k):
            continue
        shared.opts.set(k, v, is_api=is_api, run_callbacks=run_callbacks)
    if save_config:
        shared.opts.save(shared.config_filename)
