"""Tests of the mock upstream (``trio_gateway._mock``)."""
