"""The webui glue: the only package that imports the host's ``modules``.

``compat`` holds every host import (AUTOMATIC1111 vs Forge differences), ``settings`` the
Settings section and the runtime settings derived from it and from the command line, ``tab`` the
Tagger tab and its progress bridge, ``routes`` the HTTP API mounting, ``entry`` the callbacks
``scripts/tagger.py`` registers.
"""
