"""One file per config section; each helper/feature owns its own section file."""
