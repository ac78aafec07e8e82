"""Stand-in for ``modules.script_callbacks``: registration and the host's callers.

As in the webui, a callback that raises is reported (here: appended to ``reported``) and the
others still run; ``app_started_callback(demo, app)`` gets ``demo=None`` with ``--nowebui``.
"""

import traceback
from collections import namedtuple

ScriptCallback = namedtuple("ScriptCallback", ["script", "callback", "name"])

callback_map = {
    "callbacks_app_started": [],
    "callbacks_ui_tabs": [],
    "callbacks_ui_settings": [],
    "callbacks_before_ui": [],
    "callbacks_before_reload": [],
    "callbacks_script_unloaded": [],
    "callbacks_model_loaded": [],
}
reported = []  # test-only: (job, traceback text) of every callback that raised


def clear_callbacks():
    for callback_list in callback_map.values():
        callback_list.clear()


def report_exception(c, job):
    reported.append((job, traceback.format_exc()))


def add_callback(callbacks, fun, *, name=None, category=None, filename=None):
    callbacks.append(ScriptCallback(filename or "unknown", fun, name))


def app_started_callback(demo, app):
    for c in callback_map["callbacks_app_started"]:
        try:
            c.callback(demo, app)
        except Exception:
            report_exception(c, "app_started_callback")


def ui_tabs_callback():
    res = []
    for c in callback_map["callbacks_ui_tabs"]:
        try:
            res += c.callback() or []
        except Exception:
            report_exception(c, "ui_tabs_callback")
    return res


def ui_settings_callback():
    for c in callback_map["callbacks_ui_settings"]:
        try:
            c.callback()
        except Exception:
            report_exception(c, "ui_settings_callback")


def before_ui_callback():
    for c in reversed(callback_map["callbacks_before_ui"]):
        try:
            c.callback()
        except Exception:
            report_exception(c, "before_ui")


def on_app_started(callback, *, name=None):
    add_callback(callback_map["callbacks_app_started"], callback, name=name)


def on_ui_tabs(callback, *, name=None):
    add_callback(callback_map["callbacks_ui_tabs"], callback, name=name)


def on_ui_settings(callback, *, name=None):
    add_callback(callback_map["callbacks_ui_settings"], callback, name=name)


def on_before_ui(callback, *, name=None):
    add_callback(callback_map["callbacks_before_ui"], callback, name=name)


def on_before_reload(callback, *, name=None):
    add_callback(callback_map["callbacks_before_reload"], callback, name=name)


def on_script_unloaded(callback, *, name=None):
    add_callback(callback_map["callbacks_script_unloaded"], callback, name=name)


def on_model_loaded(callback, *, name=None):
    add_callback(callback_map["callbacks_model_loaded"], callback, name=name)
