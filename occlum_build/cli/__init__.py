"""Command-line front ends: argument parsing and calls into the stages, nothing more."""
