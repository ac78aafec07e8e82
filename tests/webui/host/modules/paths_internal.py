"""Stand-in for ``modules.paths_internal``: folders, set by the test fixture."""

import os
import tempfile

data_path = os.environ.get("TAGGER_TEST_WEBUI_DATA", tempfile.gettempdir())
script_path = data_path
models_path = os.path.join(data_path, "models")
extensions_dir = os.path.join(data_path, "extensions")
