"""Bundled example submissions (built from the release by :mod:`autograder.examples.build`)."""
