"""Tests of the Flagsmith adapter: a package, so its module names never collide with other providers' tests."""
