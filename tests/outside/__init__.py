"""Outside-in tests: the real CLI against an independent fake of the documented APIs."""
