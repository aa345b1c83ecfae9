"""The live Textual TUI; it speaks only the admin API."""
