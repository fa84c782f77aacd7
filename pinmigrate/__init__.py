"""pinmigrate: move Adobe Real-Time CDP Pinterest destinations from the v4 card to the v5 card."""

__version__ = "0.1.0"
