"""Stand-in for ``modules.api.api``: the webui's own API object and its settings routes.

As in AUTOMATIC1111 1.10.1: ``Api(app, queue_lock)`` reads ``--api-auth`` (``user:password``
pairs, comma-separated) and adds its routes through ``add_api_route``, which puts an HTTP Basic
check on each when ``--api-auth`` is set; building it builds the whole UI once when the script
runners are not set up (``--nowebui``). ``POST /sdapi/v1/options`` is ``set_config``: each key
goes through ``opts.set(key, value, is_api=True)``, so a ``restrict_api`` setting is left
unchanged (silently, as in the webui) and an unregistered key fails the request. Forge's
``set_config`` is ``modules.sysinfo.set_config`` instead.
"""

from secrets import compare_digest
from typing import Any

from fastapi import Depends, FastAPI, HTTPException
from fastapi.security import HTTPBasic, HTTPBasicCredentials

from modules import scripts, shared, ui


class Api:
    def __init__(self, app: FastAPI, queue_lock):
        if shared.cmd_opts.api_auth:
            self.credentials = {}
            for auth in shared.cmd_opts.api_auth.split(","):
                user, password = auth.split(":")
                self.credentials[user] = password
        self.app = app
        self.queue_lock = queue_lock
        self.add_api_route("/sdapi/v1/options", self.get_config, methods=["GET"])
        self.add_api_route("/sdapi/v1/options", self.set_config, methods=["POST"])
        self.add_api_route("/sdapi/v1/cmd-flags", self.get_cmd_flags, methods=["GET"])
        if not scripts.scripts_txt2img.scripts or not scripts.scripts_img2img.scripts:
            ui.create_ui()

    def add_api_route(self, path: str, endpoint, **kwargs):
        if shared.cmd_opts.api_auth:
            return self.app.add_api_route(
                path, endpoint, dependencies=[Depends(self.auth)], **kwargs
            )
        return self.app.add_api_route(path, endpoint, **kwargs)

    def auth(self, credentials: HTTPBasicCredentials = Depends(HTTPBasic())):  # noqa: B008
        if credentials.username in self.credentials:
            if compare_digest(credentials.password, self.credentials[credentials.username]):
                return True
        raise HTTPException(
            status_code=401,
            detail="Incorrect username or password",
            headers={"WWW-Authenticate": "Basic"},
        )

    def get_config(self):
        options = {}
        for key in shared.opts.data.keys():
            metadata = shared.opts.data_labels.get(key)
            if metadata is not None:
                options.update(
                    {key: shared.opts.data.get(key, shared.opts.data_labels.get(key).default)}
                )
            else:
                options.update({key: shared.opts.data.get(key, None)})
        return options

    def set_config(self, req: dict[str, Any]):
        for k, v in req.items():
            shared.opts.set(k, v, is_api=True)
        shared.opts.save(shared.config_filename)
        return

    def get_cmd_flags(self):
        return vars(shared.cmd_opts)
