"""Stand-in for ``modules.script_callbacks``: registration and the host's callers."""

from collections import namedtuple

ScriptCallback = namedtuple("ScriptCallback", ["script", "callback", "name"])

callback_map = {
    "callbacks_app_started": [],
    "callbacks_ui_tabs": [],
    "callbacks_ui_settings": [],
    "callbacks_before_reload": [],
    "callbacks_script_unloaded": [],
    "callbacks_model_loaded": [],
}


def clear_callbacks():
    for callback_list in callback_map.values():
        callback_list.clear()


def add_callback(callbacks, fun, *, name=None, category=None, filename=None):
    callbacks.append(ScriptCallback(filename or "unknown", fun, name))


def app_started_callback(demo, app):
    for c in callback_map["callbacks_app_started"]:
        c.callback(demo, app)


def ui_tabs_callback():
    res = []
    for c in callback_map["callbacks_ui_tabs"]:
        res += c.callback() or []
    return res


def ui_settings_callback():
    for c in callback_map["callbacks_ui_settings"]:
        c.callback()


def on_app_started(callback, *, name=None):
    add_callback(callback_map["callbacks_app_started"], callback, name=name)


def on_ui_tabs(callback, *, name=None):
    add_callback(callback_map["callbacks_ui_tabs"], callback, name=name)


def on_ui_settings(callback, *, name=None):
    add_callback(callback_map["callbacks_ui_settings"], callback, name=name)


def on_before_reload(callback, *, name=None):
    add_callback(callback_map["callbacks_before_reload"], callback, name=name)


def on_script_unloaded(callback, *, name=None):
    add_callback(callback_map["callbacks_script_unloaded"], callback, name=name)


def on_model_loaded(callback, *, name=None):
    add_callback(callback_map["callbacks_model_loaded"], callback, name=name)
