"""Stand-in for the webui's ``launch`` module as ``install.py`` sees it (tests only).

``installed`` holds the distribution/module names ``is_installed`` reports; ``pip_calls`` records
every ``run_pip(args, desc)``.
"""

installed: set = set()
pip_calls: list = []


def is_installed(package):
    return package in installed


def run_pip(command, desc=None, live=False):
    pip_calls.append((command, desc))
    return ""
