"""One module per command; each exposes a click object named ``command``."""
