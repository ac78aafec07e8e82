"""Stand-in for ``modules.shared_cmd_options``: the parsed flags (``cmd_opts``).

The real module parses ``sys.argv`` once, before anything else imports it. Tests import the
stand-in first and choose the flags afterwards with ``parse_flags``, which fills the same
``cmd_opts`` object in place (every module holding a reference to it sees the new flags).
"""

from modules import cmd_args

parser = cmd_args.parser


def _derive(opts):
    """Flags the real module computes right after parsing."""
    opts.webui_is_non_local = any([opts.share, opts.listen, opts.ngrok, opts.server_name])
    opts.disable_extension_access = (
        opts.webui_is_non_local and not opts.enable_insecure_extension_access
    )
    return opts


cmd_opts = _derive(parser.parse_args([]))


def parse_flags(argv):
    """Test helper: ``cmd_opts`` as if the webui had been started with ``argv``."""
    fresh = _derive(parser.parse_args(list(argv)))
    vars(cmd_opts).clear()
    vars(cmd_opts).update(vars(fresh))
    return cmd_opts
