"""Stand-in for the webui's ``webui.py``: how a start with given flags reaches the extensions.

``start(argv, scripts)`` does what launching the webui with ``argv`` does, in the same order:

1. the flags are parsed (``shared_cmd_options``); ``config.json`` (``--ui-settings-file``) is
   loaded into ``shared.opts`` (``shared_init.initialize``);
2. the extensions' ``scripts/*.py`` run, each with its extension folder first on ``sys.path``
   (their ``javascript/*.js`` go into the page);
3. with ``--nowebui`` (``api_only``): a bare FastAPI app, the webui's API on it (whose
   constructor builds the UI once: ``on_ui_settings`` and ``on_ui_tabs`` run, nothing is served),
   then ``app_started_callback(None, app)``;
4. otherwise (``webui``): ``ui.create_ui()``, the Gradio app (``--gradio-auth`` protects the
   page's own routes), the webui's API on it only with ``--api``, then
   ``app_started_callback(demo, app)``. Routes an extension adds to the app are not covered by
   ``--gradio-auth``: only ``--api-auth``, through the extension's own check, protects them.

``serve=True`` serves the page on 127.0.0.1 (a free port, ``--port`` if given), as
``demo.launch(prevent_thread_lock=True)`` does in the webui; else the app is built unserved.
"""

import importlib.util
import os
import sys
from types import SimpleNamespace

from modules import script_callbacks, shared, shared_cmd_options


def load_script(path):
    """Run one extension script as ``scripts.load_scripts`` does."""
    basedir = os.path.dirname(os.path.dirname(os.path.abspath(path)))
    syspath = sys.path
    try:
        sys.path = [basedir] + sys.path
        spec = importlib.util.spec_from_file_location(os.path.basename(path), path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path = syspath


def create_api(app):
    from modules.api.api import Api
    from modules.call_queue import queue_lock

    return Api(app, queue_lock)


def gradio_auth_creds():
    """``--gradio-auth u:p,u2:p2`` as (user, password) pairs."""
    text = shared.cmd_opts.gradio_auth or ""
    return [tuple(cred.strip().split(":", 1)) for cred in text.split(",") if cred.strip()]


def api_only():
    from fastapi import FastAPI

    app = FastAPI()
    create_api(app)
    script_callbacks.before_ui_callback()
    script_callbacks.app_started_callback(None, app)
    return SimpleNamespace(demo=None, app=app, url=None)


def webui(serve=False):
    from modules import ui

    launch_api = shared.cmd_opts.api
    script_callbacks.before_ui_callback()
    shared.demo = demo = ui.create_ui()
    demo.queue(64)
    auth = gradio_auth_creds() or None
    url = None
    if serve:
        app, url, _ = demo.launch(
            server_name="127.0.0.1",
            server_port=shared.cmd_opts.port,
            auth=auth,
            prevent_thread_lock=True,
            show_api=False,
        )
    else:
        from gradio.routes import App

        demo.auth = auth
        app = App.create_app(demo)
    if launch_api:
        create_api(app)
    script_callbacks.app_started_callback(demo, app)
    return SimpleNamespace(demo=demo, app=app, url=url)


def start(argv=(), scripts=(), serve=False):
    """Start the stand-in webui with these flags and extension scripts."""
    shared_cmd_options.parse_flags(argv)
    shared.apply_flags()
    shared.opts.load(shared.config_filename)
    from modules import ui

    for path in scripts:
        load_script(str(path))
        root = os.path.dirname(os.path.dirname(os.path.abspath(path)))
        folder = os.path.join(root, "javascript")
        if os.path.isdir(folder):
            ui.extension_javascript += [os.path.join(folder, f) for f in sorted(os.listdir(folder))]
    if shared.cmd_opts.nowebui:
        return api_only()
    return webui(serve=serve)
