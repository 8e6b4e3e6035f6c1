"""The command line `rnnrbm-live`: live play (live.py, options.py), `ports`, and the
offline subcommands (offline.py); main.py dispatches. Nothing else imports from here."""

PROG = "rnnrbm-live"  # the command's name, as messages start
