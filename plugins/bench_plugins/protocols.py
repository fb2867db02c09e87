"""placeholder while the harness is assembled."""
