"""The `gitsail` command line: thin commands over the library."""
