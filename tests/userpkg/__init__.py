"""User code imported by path in the tests (--model / --task)."""
